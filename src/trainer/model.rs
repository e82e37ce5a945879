//! A GPT-2 style decoder: pre-LayerNorm blocks, causal scaled-dot-product
//! attention, tanh-GELU MLP, learned positions, output tied to the token
//! embedding. Parameter names follow Hugging Face GPT-2 (`transformer.h.0...`).

use tch::nn;
use tch::{Kind, Tensor};

use crate::config::ModelConfig;

/// Sizes of the model; the vocabulary comes from the tokenizer.
#[derive(Debug, Clone, Copy)]
pub struct GptShape {
    pub vocab_size: i64,
    pub n_layer: i64,
    pub n_head: i64,
    pub n_embd: i64,
    pub block_size: i64,
}

impl GptShape {
    #[must_use]
    pub fn new(model: &ModelConfig, vocab_size: u32) -> Self {
        Self {
            vocab_size: i64::from(vocab_size),
            n_layer: i64::from(model.n_layer),
            n_head: i64::from(model.n_head),
            n_embd: i64::from(model.n_embd),
            block_size: i64::from(model.block_size),
        }
    }
}

struct Block {
    ln_1: nn::LayerNorm,
    c_attn: nn::Linear,
    attn_proj: nn::Linear,
    ln_2: nn::LayerNorm,
    c_fc: nn::Linear,
    mlp_proj: nn::Linear,
    n_head: i64,
}

pub struct Gpt {
    wte: nn::Embedding,
    wpe: nn::Embedding,
    blocks: Vec<Block>,
    ln_f: nn::LayerNorm,
    pub shape: GptShape,
}

/// GPT-2's initialisation: N(0, 0.02), residual projections scaled down by
/// sqrt(2 * n_layer), zero biases.
fn linear(path: nn::Path, in_dim: i64, out_dim: i64, stdev: f64) -> nn::Linear {
    let config = nn::LinearConfig {
        ws_init: nn::Init::Randn { mean: 0.0, stdev },
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(path, in_dim, out_dim, config)
}

impl Block {
    fn new(path: &nn::Path, shape: &GptShape) -> Self {
        let c = shape.n_embd;
        let residual_stdev = 0.02 / (2.0 * shape.n_layer as f64).sqrt();
        let attn = path / "attn";
        let mlp = path / "mlp";
        Self {
            ln_1: nn::layer_norm(path / "ln_1", vec![c], nn::LayerNormConfig::default()),
            c_attn: linear(&attn / "c_attn", c, 3 * c, 0.02),
            attn_proj: linear(&attn / "c_proj", c, c, residual_stdev),
            ln_2: nn::layer_norm(path / "ln_2", vec![c], nn::LayerNormConfig::default()),
            c_fc: linear(&mlp / "c_fc", c, 4 * c, 0.02),
            mlp_proj: linear(&mlp / "c_proj", 4 * c, c, residual_stdev),
            n_head: shape.n_head,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (batch, time, width) = x.size3().expect("block input is (batch, time, width)");
        let head_dim = width / self.n_head;
        let qkv = x
            .apply(&self.ln_1)
            .apply(&self.c_attn)
            .view([batch, time, 3, self.n_head, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let attended = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            true,
            None,
            false,
        )
        .transpose(1, 2)
        .contiguous()
        .view([batch, time, width]);
        let x = x + attended.apply(&self.attn_proj);
        let mlp = x
            .apply(&self.ln_2)
            .apply(&self.c_fc)
            .gelu("tanh")
            .apply(&self.mlp_proj);
        x + mlp
    }
}

impl Gpt {
    #[must_use]
    pub fn new(root: &nn::Path, shape: GptShape) -> Self {
        let transformer = root / "transformer";
        let embedding = nn::EmbeddingConfig {
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
            ..Default::default()
        };
        let blocks = (0..shape.n_layer)
            .map(|index| Block::new(&(&transformer / "h" / index), &shape))
            .collect();
        Self {
            wte: nn::embedding(
                &transformer / "wte",
                shape.vocab_size,
                shape.n_embd,
                embedding,
            ),
            wpe: nn::embedding(
                &transformer / "wpe",
                shape.block_size,
                shape.n_embd,
                embedding,
            ),
            blocks,
            ln_f: nn::layer_norm(
                &transformer / "ln_f",
                vec![shape.n_embd],
                nn::LayerNormConfig::default(),
            ),
            shape,
        }
    }

    /// Logits `(batch, time, vocab)` for token ids `(batch, time)`, time <= block_size.
    pub fn forward(&self, tokens: &Tensor) -> Tensor {
        let (_, time) = tokens.size2().expect("tokens are (batch, time)");
        let positions = Tensor::arange(time, (Kind::Int64, tokens.device()));
        let mut x = tokens.apply(&self.wte) + positions.apply(&self.wpe);
        for block in &self.blocks {
            x = block.forward(&x);
        }
        x.apply(&self.ln_f).matmul(&self.wte.ws.tr())
    }
}
