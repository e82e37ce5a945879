//! A GPT-2 style decoder: pre-LayerNorm blocks, causal scaled-dot-product
//! attention, tanh-GELU MLP, learned positions, output tied to the token
//! embedding. Parameter names follow Hugging Face GPT-2 (`transformer.h.0...`).
//!
//! Every operation uses tch's fallible (`f_`) calls, so a bad input during
//! evaluation becomes an error value instead of a panic.

use tch::{Device, Kind, TchError, Tensor, nn};

use trainui_protocol::config::ModelConfig;

/// Sizes of the model; the vocabulary comes from the tokenizer.
#[derive(Debug, Clone, Copy)]
pub struct GptShape {
    pub vocab_size: i64,
    pub n_layer: i64,
    pub n_head: i64,
    pub n_embd: i64,
    pub block_size: i64,
    pub layer_norm_epsilon: f64,
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
            layer_norm_epsilon: 1e-5,
        }
    }

    #[must_use]
    pub fn of(config: &crate::hf::Gpt2Config) -> Self {
        Self {
            vocab_size: i64::from(config.vocab_size),
            n_layer: i64::from(config.n_layer),
            n_head: i64::from(config.n_head),
            n_embd: i64::from(config.n_embd),
            block_size: i64::from(config.n_positions),
            layer_norm_epsilon: config.layer_norm_epsilon,
        }
    }

    fn head_dim(&self) -> i64 {
        self.n_embd / self.n_head
    }
}

struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// GPT-2's initialisation: weights N(0, stdev), zero bias.
    fn new(path: &nn::Path, in_dim: i64, out_dim: i64, stdev: f64) -> Self {
        Self {
            weight: path.var(
                "weight",
                &[out_dim, in_dim],
                nn::Init::Randn { mean: 0.0, stdev },
            ),
            bias: path.var("bias", &[out_dim], nn::Init::Const(0.0)),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        x.f_linear(&self.weight, Some(&self.bias))
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    epsilon: f64,
}

impl LayerNorm {
    fn new(path: &nn::Path, width: i64, epsilon: f64) -> Self {
        Self {
            weight: path.var("weight", &[width], nn::Init::Const(1.0)),
            bias: path.var("bias", &[width], nn::Init::Const(0.0)),
            epsilon,
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let width = self.weight.size()[0];
        x.f_layer_norm(
            [width],
            Some(&self.weight),
            Some(&self.bias),
            self.epsilon,
            true,
        )
    }
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

/// Keys and values of every layer for positions `0..len`, preallocated to
/// `block_size` so that a decoding step writes one position and copies nothing.
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: i64,
    capacity: i64,
}

impl KvCache {
    /// Zeroed keys and values for `layers` layers of `[batch, heads,
    /// capacity, head_dim]`.
    pub fn zeros(
        layers: i64,
        size: [i64; 4],
        kind: Kind,
        device: Device,
    ) -> Result<Self, TchError> {
        let layers = (0..layers)
            .map(|_| {
                Ok((
                    Tensor::f_zeros(size, (kind, device))?,
                    Tensor::f_zeros(size, (kind, device))?,
                ))
            })
            .collect::<Result<_, TchError>>()?;
        Ok(Self {
            layers,
            len: 0,
            capacity: size[2],
        })
    }

    /// The keys and values of each layer.
    pub fn layers(&self) -> &[(Tensor, Tensor)] {
        &self.layers
    }

    /// Checks that `time` more positions fit; returns the first of them.
    pub fn reserve(&self, time: i64) -> Result<i64, TchError> {
        if self.len + time > self.capacity {
            return Err(TchError::Shape(format!(
                "{time} new positions do not fit in a cache holding {} of {}",
                self.len, self.capacity
            )));
        }
        Ok(self.len)
    }

    /// Records that `time` positions were written.
    pub fn advance(&mut self, time: i64) {
        self.len += time;
    }

    /// Positions filled so far.
    #[must_use]
    pub fn len(&self) -> i64 {
        self.len
    }

    #[must_use]
    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    /// Forgets every position (the memory is kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

pub struct Gpt {
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    pub shape: GptShape,
}

impl Block {
    fn new(path: &nn::Path, shape: &GptShape) -> Self {
        let c = shape.n_embd;
        let residual_stdev = 0.02 / (2.0 * shape.n_layer as f64).sqrt();
        let attn = path / "attn";
        let mlp = path / "mlp";
        Self {
            ln_1: LayerNorm::new(&(path / "ln_1"), c, shape.layer_norm_epsilon),
            c_attn: Linear::new(&(&attn / "c_attn"), c, 3 * c, 0.02),
            attn_proj: Linear::new(&(&attn / "c_proj"), c, c, residual_stdev),
            ln_2: LayerNorm::new(&(path / "ln_2"), c, shape.layer_norm_epsilon),
            c_fc: Linear::new(&(&mlp / "c_fc"), c, 4 * c, 0.02),
            mlp_proj: Linear::new(&(&mlp / "c_proj"), 4 * c, c, residual_stdev),
        }
    }

    /// `x` is `(batch, time, width)` at positions `start..start + time`. With a
    /// cache, keys and values are stored there and attention covers all
    /// positions up to the last new one.
    fn forward(
        &self,
        x: &Tensor,
        shape: &GptShape,
        cache: Option<&(Tensor, Tensor)>,
        start: i64,
    ) -> Result<Tensor, TchError> {
        let (batch, time, width) = x.size3()?;
        // Split, then view each as (batch, head, time, head_dim). (Selecting
        // from one permuted 5-d view instead costs about a tenth of the
        // training step in the backward pass.)
        let heads = |t: &Tensor| {
            t.f_view([batch, time, shape.n_head, shape.head_dim()])?
                .f_transpose(1, 2)
        };
        let qkv = self
            .c_attn
            .forward(&self.ln_1.forward(x)?)?
            .f_split(width, 2)?;
        let (q, k, v) = (heads(&qkv[0])?, heads(&qkv[1])?, heads(&qkv[2])?);
        let attended = match cache {
            None => Tensor::f_scaled_dot_product_attention(
                &q,
                &k,
                &v,
                None::<Tensor>,
                0.0,
                true,
                None,
                false,
            )?,
            Some((keys, values)) => {
                keys.f_narrow(2, start, time)?.f_copy_(&k)?;
                values.f_narrow(2, start, time)?.f_copy_(&v)?;
                let seen = start + time;
                // New positions attend to everything before them; several new
                // positions at once (a prefill) only happen from position 0.
                let causal = time > 1;
                if causal && start != 0 {
                    return Err(TchError::Shape(format!(
                        "a multi-token step must start at position 0, not {start}"
                    )));
                }
                Tensor::f_scaled_dot_product_attention(
                    &q,
                    &keys.f_narrow(2, 0, seen)?,
                    &values.f_narrow(2, 0, seen)?,
                    None::<Tensor>,
                    0.0,
                    causal,
                    None,
                    false,
                )?
            }
        };
        let attended = attended
            .f_transpose(1, 2)?
            .f_contiguous()?
            .f_reshape([batch, time, width])?;
        let x = x.f_add(&self.attn_proj.forward(&attended)?)?;
        let hidden = self.c_fc.forward(&self.ln_2.forward(&x)?)?.f_gelu("tanh")?;
        x.f_add(&self.mlp_proj.forward(&hidden)?)
    }
}

impl Gpt {
    #[must_use]
    pub fn new(root: &nn::Path, shape: GptShape) -> Self {
        let transformer = root / "transformer";
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let blocks = (0..shape.n_layer)
            .map(|i| Block::new(&(&transformer / "h" / i), &shape))
            .collect();
        Self {
            wte: (&transformer / "wte").var("weight", &[shape.vocab_size, shape.n_embd], init),
            wpe: (&transformer / "wpe").var("weight", &[shape.block_size, shape.n_embd], init),
            blocks,
            ln_f: LayerNorm::new(
                &(&transformer / "ln_f"),
                shape.n_embd,
                shape.layer_norm_epsilon,
            ),
            shape,
        }
    }

    fn embed(&self, tokens: &Tensor, start: i64) -> Result<Tensor, TchError> {
        let (_, time) = tokens.size2()?;
        let positions =
            Tensor::f_arange_start(start, start + time, (Kind::Int64, tokens.device()))?;
        let token_embedding = Tensor::f_embedding(&self.wte, tokens, -1, false, false)?;
        let position_embedding = Tensor::f_embedding(&self.wpe, &positions, -1, false, false)?;
        token_embedding.f_add(&position_embedding)
    }

    fn head(&self, x: &Tensor) -> Result<Tensor, TchError> {
        self.ln_f.forward(x)?.f_linear(&self.wte, None::<Tensor>)
    }
}

/// A decoder-only language model: what training and generation need.
pub trait CausalLm {
    /// Logits `(batch, time, vocab)` for token ids `(batch, time)` from
    /// position 0, attending causally.
    fn forward(&self, tokens: &Tensor) -> Result<Tensor, TchError>;

    /// An empty cache for `batch` sequences of up to `capacity` positions.
    fn new_cache(&self, batch: i64, capacity: i64, device: Device) -> Result<KvCache, TchError>;

    /// Logits `(batch, vocab)` of the last position for `tokens` that follow
    /// the cached positions. The cache must have room for them.
    fn forward_cached(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor, TchError>;

    fn vocab_size(&self) -> i64;
}

impl CausalLm for Gpt {
    fn forward(&self, tokens: &Tensor) -> Result<Tensor, TchError> {
        let mut x = self.embed(tokens, 0)?;
        for block in &self.blocks {
            x = block.forward(&x, &self.shape, None, 0)?;
        }
        self.head(&x)
    }

    fn new_cache(&self, batch: i64, capacity: i64, device: Device) -> Result<KvCache, TchError> {
        let s = &self.shape;
        let capacity = capacity.clamp(1, s.block_size);
        KvCache::zeros(
            s.n_layer,
            [batch, s.n_head, capacity, s.head_dim()],
            self.wte.kind(),
            device,
        )
    }

    fn forward_cached(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor, TchError> {
        let (_, time) = tokens.size2()?;
        let start = cache.reserve(time)?;
        let mut x = self.embed(tokens, start)?;
        for (block, layer) in self.blocks.iter().zip(cache.layers()) {
            x = block.forward(&x, &self.shape, Some(layer), start)?;
        }
        cache.advance(time);
        self.head(&x.f_select(1, time - 1)?)
    }

    fn vocab_size(&self) -> i64 {
        self.shape.vocab_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (nn::VarStore, Gpt) {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let shape = GptShape {
            vocab_size: 50,
            n_layer: 2,
            n_head: 2,
            n_embd: 16,
            block_size: 12,
            layer_norm_epsilon: 1e-5,
        };
        let model = Gpt::new(&vs.root(), shape);
        (vs, model)
    }

    #[test]
    fn cached_decoding_gives_the_full_forward_logits() {
        let (_vs, model) = tiny();
        let _no_grad = tch::no_grad_guard();
        let tokens = [3i64, 14, 15, 9, 2, 6, 5, 35];
        let full = model
            .forward(&Tensor::from_slice(&tokens).view([1, -1]))
            .unwrap();
        let mut cache = model.new_cache(1, 64, Device::Cpu).unwrap();
        // Prefill three positions, then one at a time.
        let mut last = model
            .forward_cached(&Tensor::from_slice(&tokens[..3]).view([1, 3]), &mut cache)
            .unwrap();
        let check = |logits: &Tensor, position: i64| {
            let expected = full.select(1, position);
            let diff = (logits - &expected).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "position {position}: max diff {diff}");
        };
        check(&last, 2);
        for (position, &token) in tokens.iter().enumerate().skip(3) {
            last = model
                .forward_cached(&Tensor::from_slice(&[token]).view([1, 1]), &mut cache)
                .unwrap();
            check(&last, position as i64);
        }
        assert_eq!(cache.len(), tokens.len() as i64);
    }

    #[test]
    fn a_full_cache_refuses_more_positions() {
        let (_vs, model) = tiny();
        let _no_grad = tch::no_grad_guard();
        let mut cache = model.new_cache(1, 64, Device::Cpu).unwrap();
        let prompt = Tensor::from_slice(&[1i64; 12]).view([1, 12]);
        let _ = model.forward_cached(&prompt, &mut cache).unwrap();
        let next = Tensor::from_slice(&[1i64]).view([1, 1]);
        assert!(model.forward_cached(&next, &mut cache).is_err());
    }

    #[test]
    fn an_out_of_vocabulary_token_is_an_error_not_a_panic() {
        let (_vs, model) = tiny();
        let tokens = Tensor::from_slice(&[1i64, 999]).view([1, 2]);
        assert!(model.forward(&tokens).is_err());
    }
}
