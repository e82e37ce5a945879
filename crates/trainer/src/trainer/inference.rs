//! Models outside a training run: loaded from a Hugging Face folder or a
//! trainui checkpoint, for `trainui generate` and `trainui export`.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;
use tch::nn;

use super::device::{build_model, device_of, use_bf16};
use super::generate::{GenerationRequest, generate};
use super::hf_weights;
use super::model::CausalLm;
use crate::checkpoint;
use crate::data::TextTokenizer;
use crate::hf::{self, Architecture};
use trainui_protocol::config::DevicePref;
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::GenerationOutcome;
use trainui_protocol::watchdog::Heartbeat;

struct Loaded {
    vs: nn::VarStore,
    model: Box<dyn CausalLm>,
    architecture: Architecture,
    tokenizer: TextTokenizer,
    device: tch::Device,
}

/// A checkpoint folder (it has a trainui manifest) or a Hugging Face folder.
fn load(source: &Path, device: DevicePref) -> Result<Loaded> {
    if !source.is_dir() {
        return Err(Error::Usage(format!(
            "{}: no such folder; --model takes a Hugging Face model folder or \
             RUN_DIR/checkpoints/checkpoint-N",
            source.display()
        )));
    }
    let device = device_of(device)?;
    let mut vs = nn::VarStore::new(device);
    if source.join(hf::CONFIG_FILE).is_file() {
        let folder = hf::read_folder(source)?;
        let tokenizer = TextTokenizer::load_with_eot(&folder.tokenizer(), folder.eos_token_id)?;
        let model = build_model(&vs, &folder.architecture);
        use_bf16(&mut vs, folder.wants_bf16());
        hf_weights::load(&vs, &folder.architecture, &folder.weights)?;
        return Ok(Loaded {
            vs,
            model,
            architecture: folder.architecture,
            tokenizer,
            device,
        });
    }
    let state = checkpoint::verify(source).map_err(|e| {
        Error::Input(format!(
            "{e}\n{}: neither a Hugging Face model folder (config.json) nor a trainui checkpoint",
            source.display()
        ))
    })?;
    let saved_tokenizer = source.join(checkpoint::TOKENIZER_FILE);
    let tokenizer = if saved_tokenizer.is_file() {
        TextTokenizer::load_with_eot(&saved_tokenizer, state.eot_id)
    } else {
        TextTokenizer::load(&state.config.data.tokenizer)
    }?;
    let architecture = state
        .architecture
        .clone()
        .unwrap_or_else(|| Architecture::gpt2(&state.config.model, state.vocab_size));
    let model = build_model(&vs, &architecture);
    use_bf16(&mut vs, state.bf16);
    let model_file = source.join(checkpoint::MODEL_FILE);
    vs.load(&model_file)
        .map_err(|e| Error::Torch(format!("{}: {e}", model_file.display())))?;
    Ok(Loaded {
        vs,
        model,
        architecture,
        tokenizer,
        device,
    })
}

/// What `trainui generate` asks for.
pub struct TextRequest<'a> {
    pub prompt: &'a str,
    pub max_new_tokens: u32,
    /// End-of-text is not picked before this many tokens.
    pub min_new_tokens: u32,
    pub temperature: f64,
    pub timeout: Duration,
    pub seed: u64,
}

/// A generation with its token ids, as `trainui generate --json` prints it.
#[derive(Debug, Serialize)]
pub struct TextGeneration {
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub completion: String,
    pub token_ids: Vec<u32>,
    pub outcome: GenerationOutcome,
    pub elapsed_secs: f64,
}

/// Generates a completion of `request.prompt` with the model at `source`,
/// under the same deadline and outcomes as evaluation.
pub fn generate_text(
    source: &Path,
    device: DevicePref,
    request: &TextRequest<'_>,
) -> Result<TextGeneration> {
    let loaded = load(source, device)?;
    let prompt_ids = loaded.tokenizer.encode(request.prompt)?;
    if prompt_ids.is_empty() {
        return Err(Error::Usage("--prompt is empty once tokenized".into()));
    }
    let abort = AtomicBool::new(false);
    let heartbeat = Heartbeat::default();
    let generation = generate(
        &*loaded.model,
        loaded.device,
        &GenerationRequest {
            prompt: &prompt_ids,
            max_new_tokens: request.max_new_tokens,
            min_new_tokens: request.min_new_tokens,
            temperature: request.temperature,
            eot_id: loaded.tokenizer.eot_id,
            deadline: Instant::now() + request.timeout,
            abort: &abort,
            heartbeat: &heartbeat,
            seed: request.seed,
        },
        &mut |_, _| {},
    );
    Ok(TextGeneration {
        prompt: request.prompt.to_owned(),
        completion: loaded.tokenizer.decode(&generation.tokens)?,
        prompt_ids,
        token_ids: generation.tokens,
        outcome: generation.outcome,
        elapsed_secs: generation.elapsed.as_secs_f64(),
    })
}

/// Writes the model at `source` (a checkpoint, or a model folder) to `out`
/// as a Hugging Face folder: config.json, model.safetensors, tokenizer.json.
/// `out` must not exist; it appears whole or not at all.
pub fn export(source: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        return Err(Error::Usage(format!(
            "{}: already exists; export writes a new folder",
            out.display()
        )));
    }
    let name = out
        .file_name()
        .ok_or_else(|| Error::Usage(format!("--out {}: not a folder name", out.display())))?;
    let loaded = load(source, DevicePref::Cpu)?;
    let mut temp_name = name.to_os_string();
    temp_name.push(format!(".tmp.{}", std::process::id()));
    let temp = out.with_file_name(temp_name);
    let written = (|| {
        std::fs::create_dir_all(&temp).map_err(Error::io("cannot create the folder", &temp))?;
        hf_weights::export(&loaded.vs, &loaded.architecture, &temp)?;
        let config = loaded.architecture.hf_config(loaded.tokenizer.eot_id);
        let config_path = temp.join(hf::CONFIG_FILE);
        let text = serde_json::to_string_pretty(&config).expect("a JSON value serialises");
        std::fs::write(&config_path, text).map_err(Error::io("cannot write", &config_path))?;
        loaded.tokenizer.save(&temp.join(hf::TOKENIZER_FILE))?;
        std::fs::rename(&temp, out).map_err(Error::io("cannot rename into place", out))
    })();
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    //! trainui against transformers on tiny random checkpoints that
    //! tests/hf/tiny_models.py builds with transformers itself.

    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::LazyLock;

    use serde_json::Value;
    use tch::{Device, Kind, Tensor};

    use super::*;

    fn python() -> String {
        std::env::var("TRAINUI_PYTHON").expect(
            "TRAINUI_PYTHON names a Python with torch 2.13.0 and transformers; ./dev test sets it",
        )
    }

    fn helper() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hf/tiny_models.py")
    }

    /// The folders and the reference, made once for all tests here.
    static MODELS: LazyLock<(tempfile::TempDir, Value)> = LazyLock::new(|| {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join("assets/demo/tokenizer.json");
        let status = Command::new(python())
            .arg(helper())
            .arg("make")
            .arg(dir.path())
            .arg(tokenizer)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        let reference = std::fs::read_to_string(dir.path().join("reference.json")).unwrap();
        (dir, serde_json::from_str(&reference).unwrap())
    });

    fn ids(value: &Value) -> Vec<i64> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    }

    /// Greedy decoding by full forward passes over the growing context (no cache).
    fn greedy_uncached(loaded: &Loaded, prompt: &[i64], n: usize) -> Vec<i64> {
        let _no_grad = tch::no_grad_guard();
        let mut context = prompt.to_vec();
        let mut out = Vec::new();
        for _ in 0..n {
            let logits = loaded
                .model
                .forward(&Tensor::from_slice(&context).view([1, -1]))
                .unwrap();
            let next = logits.select(1, -1).argmax(-1, false).int64_value(&[0]);
            if next == i64::from(loaded.tokenizer.eot_id) {
                break;
            }
            out.push(next);
            context.push(next);
        }
        out
    }

    fn greedy_cached(loaded: &Loaded, prompt: &[i64], n: u32) -> Vec<i64> {
        let prompt: Vec<u32> = prompt.iter().map(|&t| t as u32).collect();
        let abort = AtomicBool::new(false);
        let heartbeat = Heartbeat::default();
        let generation = generate(
            &*loaded.model,
            Device::Cpu,
            &GenerationRequest {
                prompt: &prompt,
                max_new_tokens: n,
                min_new_tokens: 0,
                temperature: 0.0,
                eot_id: loaded.tokenizer.eot_id,
                deadline: Instant::now() + Duration::from_mins(1),
                abort: &abort,
                heartbeat: &heartbeat,
                seed: 0,
            },
            &mut |_, _| {},
        );
        generation.tokens.iter().map(|&t| i64::from(t)).collect()
    }

    fn check_against_transformers(folder: &str, name: &str) {
        let (dir, reference) = &*MODELS;
        let loaded = load(&dir.path().join(folder), DevicePref::Cpu).unwrap();
        for case in reference[name].as_array().unwrap() {
            let prompt = ids(&case["prompt"]);
            let ours = {
                let _no_grad = tch::no_grad_guard();
                loaded
                    .model
                    .forward(&Tensor::from_slice(&prompt).view([1, -1]))
                    .unwrap()
                    .select(1, -1)
                    .squeeze()
            };
            let theirs: Vec<f32> = case["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let diff = (ours - Tensor::from_slice(&theirs))
                .abs()
                .max()
                .double_value(&[]);
            assert!(diff <= 1e-4, "{name} {prompt:?}: logits differ by {diff}");
            let expected = ids(&case["greedy_cached"]);
            assert_eq!(
                expected,
                ids(&case["greedy_uncached"]),
                "transformers itself"
            );
            assert_eq!(
                greedy_cached(&loaded, &prompt, 32),
                expected,
                "{name} cached"
            );
            assert_eq!(
                greedy_uncached(&loaded, &prompt, 32),
                expected,
                "{name} uncached"
            );
        }
    }

    #[test]
    fn gpt2_matches_transformers_logits_and_greedy_tokens() {
        check_against_transformers("gpt2", "gpt2");
    }

    #[test]
    fn llama_with_grouped_query_attention_matches_transformers() {
        check_against_transformers("llama", "llama");
    }

    #[test]
    fn qwen2_with_attention_biases_and_a_tied_head_matches_transformers() {
        check_against_transformers("qwen2", "qwen2");
    }

    #[test]
    fn sharded_weights_load_through_their_index() {
        let (dir, _) = &*MODELS;
        let shards = std::fs::read_dir(dir.path().join("llama-sharded"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".safetensors")
            })
            .count();
        assert!(shards > 1, "the helper wrote {shards} shard(s)");
        check_against_transformers("llama-sharded", "llama");
    }

    #[test]
    fn an_export_loads_in_transformers_with_the_same_logits() {
        let (dir, _) = &*MODELS;
        let out = tempfile::tempdir().unwrap();
        for name in ["gpt2", "llama", "qwen2"] {
            let source = dir.path().join(name);
            let exported = out.path().join(name);
            export(&source, &exported).unwrap();
            let loaded = load(&exported, DevicePref::Cpu).unwrap();
            let prompt = [4i64, 8, 15, 16, 23, 42];
            let ours: Vec<f32> = {
                let _no_grad = tch::no_grad_guard();
                let logits = loaded
                    .model
                    .forward(&Tensor::from_slice(&prompt).view([1, -1]))
                    .unwrap()
                    .select(1, -1)
                    .squeeze()
                    .to_kind(Kind::Float);
                Vec::try_from(logits).unwrap()
            };
            let output = Command::new(python())
                .arg(helper())
                .arg("logits")
                .arg(&exported)
                .arg(serde_json::to_string(&prompt).unwrap())
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let theirs: Vec<f32> = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(ours.len(), theirs.len());
            let diff = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(diff <= 1e-4, "{name}: exported logits differ by {diff}");
        }
    }
}
