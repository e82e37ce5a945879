//! Prompt/completion data: JSONL files tokenized into training examples, and
//! the tokenizer they share with generation.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenizers::Tokenizer;

use trainui_protocol::config::Overlong;
use trainui_protocol::error::{Error, Result};

/// The token that ends every completion.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// Longest line of a data file read. Tokenizing takes hundreds of bytes of
/// memory per byte of text, and no example that fits a model's context
/// comes near this.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Largest vocabulary `trainui tokenizer` trains.
pub const MAX_VOCAB_SIZE: usize = 1 << 20;

/// One line of a data file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    prompt: String,
    completion: String,
}

/// A tokenized example: prompt tokens, then completion tokens and end-of-text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub tokens: Vec<u32>,
    /// Tokens that belong to the prompt; the loss ignores them.
    pub prompt_len: usize,
    /// Where the example came from: file name and line.
    pub origin: String,
}

/// The examples of one file, with those left out for their length.
#[derive(Debug)]
pub struct Dataset {
    pub examples: Vec<Example>,
    pub skipped_overlong: u64,
}

/// A tokenizer with its end-of-text id.
pub struct TextTokenizer {
    inner: Tokenizer,
    pub eot_id: u32,
    pub vocab_size: u32,
}

impl TextTokenizer {
    /// A model folder's tokenizer, its end-of-text the folder's
    /// `eos_token_id`, else the first of the usual end-of-text tokens it has.
    pub fn load_with_eot(path: &Path, eos_token_id: Option<u32>) -> Result<Self> {
        let inner = read_tokenizer(
            path,
            "a model folder needs the tokenizer.json it was trained with",
        )?;
        let vocab_size = inner.get_vocab_size(true) as u32;
        let eot_id = eos_token_id
            .or_else(|| {
                [
                    END_OF_TEXT,
                    "</s>",
                    "<|end_of_text|>",
                    "<|im_end|>",
                    "<eos>",
                ]
                .iter()
                .find_map(|token| inner.token_to_id(token))
            })
            .ok_or_else(|| {
                Error::Input(format!(
                    "{}: no end-of-text token: config.json has no eos_token_id and the tokenizer \
                     has none of {END_OF_TEXT}, </s>, <|end_of_text|>",
                    path.display()
                ))
            })?;
        Ok(Self {
            inner,
            eot_id,
            vocab_size,
        })
    }

    /// Writes the tokenizer as a tokenizer.json.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path, false).map_err(|e| {
            Error::Failed(format!(
                "{}: cannot write the tokenizer: {e}",
                path.display()
            ))
        })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let inner = read_tokenizer(
            path,
            &format!(
                "set data.tokenizer to a tokenizer.json, or make one with `trainui tokenizer \
                 --data TRAIN.jsonl --out {}`",
                path.display()
            ),
        )?;
        let eot_id = inner.token_to_id(END_OF_TEXT).ok_or_else(|| {
            Error::Input(format!(
                "{}: the tokenizer has no {END_OF_TEXT} token; retrain it with `trainui tokenizer`",
                path.display()
            ))
        })?;
        let vocab_size = inner.get_vocab_size(true) as u32;
        Ok(Self {
            inner,
            eot_id,
            vocab_size,
        })
    }

    /// A tokenizer whose words are `t0`, `t1`, ... with end-of-text as the
    /// last of `vocab_size` tokens: for synthetic data (the bench).
    #[must_use]
    pub fn numbered(vocab_size: u32) -> Self {
        let eot_id = vocab_size - 1;
        let mut vocab: serde_json::Map<String, serde_json::Value> = (0..eot_id)
            .map(|id| (format!("t{id}"), id.into()))
            .collect();
        vocab.insert(END_OF_TEXT.to_owned(), eot_id.into());
        let json = serde_json::json!({
            "version": "1.0",
            "added_tokens": [{
                "id": eot_id, "content": END_OF_TEXT, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            }],
            "pre_tokenizer": {"type": "WhitespaceSplit"},
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"}
        });
        let inner: Tokenizer = json
            .to_string()
            .parse()
            .expect("a word-level tokenizer built here is valid");
        Self {
            inner,
            eot_id,
            vocab_size,
        }
    }

    /// Token ids of `text`, without special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode(text, false)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|err| Error::Failed(format!("cannot tokenize {:?}: {err}", clip(text))))
    }

    /// Text of `ids`, with special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|err| Error::Failed(format!("cannot decode tokens: {err}")))
    }
}

/// The start of a long text, for a message.
fn clip(text: &str) -> String {
    let start: String = text.chars().take(40).collect();
    if start.len() < text.len() {
        format!("{start}...")
    } else {
        start
    }
}

/// Reads a tokenizer.json; `fix` says what to do when there is none.
fn read_tokenizer(path: &Path, fix: &str) -> Result<Tokenizer> {
    if !path.is_file() {
        return Err(Error::Input(format!(
            "{}: tokenizer file not found; {fix}",
            path.display()
        )));
    }
    let text = trainui_protocol::runfile::read_text(path).map_err(|err| {
        Error::Input(format!(
            "{}: cannot read the tokenizer: {err}",
            path.display()
        ))
    })?;
    Tokenizer::from_bytes(text).map_err(|err| {
        Error::Input(format!(
            "{}: not a valid tokenizer.json: {err}",
            path.display()
        ))
    })
}

/// Reads and tokenizes a JSONL file of `{"prompt", "completion"}` objects.
pub fn load_examples(
    path: &Path,
    tokenizer: &TextTokenizer,
    block_size: usize,
    overlong: Overlong,
) -> Result<Dataset> {
    let name = path.display();
    let file_name = path
        .file_name()
        .map_or_else(|| name.to_string(), |n| n.to_string_lossy().into_owned());
    let text = trainui_protocol::runfile::read_text(path)
        .map_err(|err| Error::Input(format!("{name}: cannot read the data file: {err}")))?;
    let mut examples = Vec::new();
    let mut skipped_overlong = 0;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > MAX_LINE_BYTES {
            if overlong == Overlong::Skip {
                skipped_overlong += 1;
                continue;
            }
            return Err(Error::Input(format!(
                "{name}:{line_no}: a line of {} bytes, more than the {MAX_LINE_BYTES} a line of \
                 data may have; shorten it, or set data.overlong to \"skip\"",
                line.len()
            )));
        }
        let record: Record = serde_json::from_str(line).map_err(|err| {
            Error::Input(format!(
                "{name}:{line_no}: expected {{\"prompt\": \"...\", \"completion\": \"...\"}}: {err}"
            ))
        })?;
        let encode = |text: &str| {
            tokenizer
                .encode(text)
                .map_err(|err| Error::Input(format!("{name}:{line_no}: {err}")))
        };
        let mut tokens = encode(&record.prompt)?;
        let prompt_len = tokens.len();
        if prompt_len == 0 {
            return Err(Error::Input(format!(
                "{name}:{line_no}: the prompt is empty"
            )));
        }
        tokens.extend(encode(&record.completion)?);
        tokens.push(tokenizer.eot_id);
        if tokens.len() > block_size {
            if overlong == Overlong::Skip {
                skipped_overlong += 1;
                continue;
            }
            return Err(Error::Input(format!(
                "{name}:{line_no}: example is {} tokens (prompt {prompt_len}, completion {}, \
                 end-of-text 1), more than model.block_size = {block_size}; shorten it, raise \
                 model.block_size, or set data.overlong to \"skip\"",
                tokens.len(),
                tokens.len() - prompt_len - 1,
            )));
        }
        examples.push(Example {
            tokens,
            prompt_len,
            origin: format!("{file_name}:{line_no}"),
        });
    }
    if examples.is_empty() {
        let why = if skipped_overlong > 0 {
            format!("all {skipped_overlong} examples are longer than model.block_size")
        } else {
            "the file has no examples".to_owned()
        };
        return Err(Error::Input(format!(
            "{name}: {why}; it needs lines of {{\"prompt\": \"...\", \"completion\": \"...\"}}"
        )));
    }
    Ok(Dataset {
        examples,
        skipped_overlong,
    })
}

/// Options of `trainui tokenizer`.
pub struct TokenizerTraining {
    pub data: Vec<PathBuf>,
    pub vocab_size: usize,
    pub out: PathBuf,
}

/// Trains a byte-level BPE tokenizer on the prompts and completions of JSONL
/// files. Digits are always single tokens, so numbers tokenize by the digit.
pub fn train_tokenizer(options: &TokenizerTraining) -> Result<u32> {
    use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::{
        AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
        TokenizerBuilder,
    };

    if options.vocab_size < 257 {
        return Err(Error::Usage(format!(
            "--vocab-size {}: a byte-level tokenizer needs at least 257 (256 bytes and \
             end-of-text)",
            options.vocab_size
        )));
    }
    if options.vocab_size > MAX_VOCAB_SIZE {
        return Err(Error::Usage(format!(
            "--vocab-size {}: at most {MAX_VOCAB_SIZE} (the largest vocabularies in use hold a \
             few hundred thousand tokens)",
            options.vocab_size
        )));
    }
    let mut texts = Vec::new();
    for path in &options.data {
        let name = path.display();
        let text = trainui_protocol::runfile::read_text(path)
            .map_err(|err| Error::Input(format!("{name}: cannot read the data file: {err}")))?;
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if line.len() > MAX_LINE_BYTES {
                return Err(Error::Input(format!(
                    "{name}:{}: a line of {} bytes, more than the {MAX_LINE_BYTES} a line of \
                     data may have",
                    index + 1,
                    line.len()
                )));
            }
            let record: Record = serde_json::from_str(line).map_err(|err| {
                Error::Input(format!(
                    "{name}:{}: expected {{\"prompt\": \"...\", \"completion\": \"...\"}}: {err}",
                    index + 1
                ))
            })?;
            texts.push(record.prompt);
            texts.push(record.completion);
        }
    }
    if texts.is_empty() {
        return Err(Error::Input(
            "the data files hold no examples to train a tokenizer on".into(),
        ));
    }

    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(options.vocab_size)
        .min_frequency(2)
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let pre_tokenizer = Sequence::new(vec![
        PreTokenizerWrapper::Digits(Digits::new(true)),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
    ]);
    let mut tokenizer = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre_tokenizer)))
    .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())))
    .build()
    .map_err(|err| Error::Failed(format!("cannot build the tokenizer: {err}")))?;
    tokenizer
        .train(&mut trainer, texts.iter())
        .map_err(|err| Error::Failed(format!("tokenizer training failed: {err}")))?;
    let json = tokenizer
        .to_string(true)
        .map_err(|err| Error::Failed(format!("cannot serialise the tokenizer: {err}")))?;
    if let Some(parent) = options.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(Error::io("cannot create the folder", parent))?;
    }
    trainui_protocol::rundir::write_atomically(&options.out, json.as_bytes())
        .map_err(Error::io("cannot write the tokenizer", &options.out))?;
    Ok(tokenizer.get_vocab_size(true) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_tokenizer() -> TextTokenizer {
        let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        TextTokenizer::load(&root.join("assets/demo/tokenizer.json")).unwrap()
    }

    fn load(text: &str, block_size: usize, overlong: Overlong) -> Result<Dataset> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.jsonl");
        fs::write(&path, text).unwrap();
        load_examples(&path, &demo_tokenizer(), block_size, overlong)
    }

    #[test]
    fn digits_are_single_tokens_and_text_round_trips() {
        let tokenizer = demo_tokenizer();
        let ids = tokenizer.encode("rev 40721=").unwrap();
        assert!(ids.len() >= 6, "{ids:?}");
        assert_eq!(tokenizer.decode(&ids).unwrap(), "rev 40721=");
    }

    #[test]
    fn examples_end_with_end_of_text_and_know_their_prompt() {
        let data = load(
            "{\"prompt\": \"12+30=\", \"completion\": \"42\"}\n",
            32,
            Overlong::Error,
        )
        .unwrap();
        let example = &data.examples[0];
        assert_eq!(example.tokens.last(), Some(&demo_tokenizer().eot_id));
        assert_eq!(example.prompt_len, 6);
        assert_eq!(example.tokens.len(), 6 + 2 + 1);
    }

    #[test]
    fn a_malformed_line_names_file_and_line() {
        let text = "{\"prompt\": \"1+1=\", \"completion\": \"2\"}\n{\"prompt\": \"2+2=\"}\n";
        let message = load(text, 32, Overlong::Error).unwrap_err().to_string();
        assert!(message.contains("train.jsonl:2: expected"), "{message}");
        assert!(message.contains("missing field `completion`"), "{message}");
    }

    #[test]
    fn an_empty_file_is_an_error() {
        let message = load("\n", 32, Overlong::Error).unwrap_err().to_string();
        assert!(
            message.contains("train.jsonl: the file has no examples"),
            "{message}"
        );
    }

    #[test]
    fn overlong_examples_are_errors_or_skipped_as_configured() {
        let text = "{\"prompt\": \"1+1=\", \"completion\": \"2\"}\n\
                    {\"prompt\": \"rev 1234567890=\", \"completion\": \"0987654321\"}\n";
        let message = load(text, 8, Overlong::Error).unwrap_err().to_string();
        assert!(message.contains("train.jsonl:2: example is"), "{message}");
        assert!(message.contains("model.block_size = 8"), "{message}");
        let data = load(text, 8, Overlong::Skip).unwrap();
        assert_eq!((data.examples.len(), data.skipped_overlong), (1, 1));
    }

    #[test]
    fn the_numbered_tokenizer_round_trips_and_ends_with_end_of_text() {
        let tokenizer = TextTokenizer::numbered(2048);
        assert_eq!(tokenizer.vocab_size, 2048);
        assert_eq!(tokenizer.eot_id, 2047);
        assert_eq!(tokenizer.encode("t5 t2046 t0").unwrap(), [5, 2046, 0]);
        assert_eq!(tokenizer.decode(&[5, 2047, 7]).unwrap(), "t5 t7");
    }

    #[test]
    fn a_missing_tokenizer_says_how_to_make_one() {
        let Err(err) = TextTokenizer::load(Path::new("/nonexistent/tokenizer.json")) else {
            panic!("a missing tokenizer loaded");
        };
        let message = err.to_string();
        assert!(message.contains("/nonexistent/tokenizer.json: tokenizer file not found"));
        assert!(message.contains("trainui tokenizer"), "{message}");
    }
}
