//! The Llama family (and Qwen2): RMSNorm, rotary positions with
//! `rope_theta`, SwiGLU MLP, grouped-query attention, optionally tied
//! embeddings. Parameter names follow Hugging Face (`model.layers.0...`), in
//! `nn.Linear`'s `(out, in)` layout, so loading and exporting copy tensors
//! one for one. A Llama is only ever built to receive weights (from a model
//! folder or a checkpoint, which must supply every tensor), so its
//! variables start as zeros rather than drawing random numbers for nothing.

use tch::{Device, Kind, TchError, Tensor, nn};

use super::model::{CausalLm, KvCache};
use crate::hf::LlamaConfig;

struct Projection {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Projection {
    fn new(path: &nn::Path, in_dim: u32, out_dim: u32, bias: bool) -> Self {
        let (in_dim, out_dim) = (i64::from(in_dim), i64::from(out_dim));
        Self {
            weight: path.var("weight", &[out_dim, in_dim], nn::Init::Const(0.0)),
            bias: bias.then(|| path.var("bias", &[out_dim], nn::Init::Const(0.0))),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        x.f_linear(&self.weight, self.bias.as_ref())
    }
}

struct Layer {
    input_layernorm: Tensor,
    q_proj: Projection,
    k_proj: Projection,
    v_proj: Projection,
    o_proj: Projection,
    post_attention_layernorm: Tensor,
    gate_proj: Projection,
    up_proj: Projection,
    down_proj: Projection,
}

pub struct Llama {
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    /// `None` when the head is the embedding (tied).
    lm_head: Option<Tensor>,
    config: LlamaConfig,
    /// `1 / theta^(2i / head_dim)`, float32, on the model's device.
    inv_freq: Tensor,
}

impl Llama {
    #[must_use]
    pub fn new(root: &nn::Path, config: &LlamaConfig) -> Self {
        let c = config;
        let model = root / "model";
        let ones = |path: &nn::Path, width: u32| {
            path.var("weight", &[i64::from(width)], nn::Init::Const(1.0))
        };
        let (q_width, kv_width) = (
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let layer = &model / "layers" / i;
                let attn = &layer / "self_attn";
                let mlp = &layer / "mlp";
                Layer {
                    input_layernorm: ones(&(&layer / "input_layernorm"), c.hidden_size),
                    q_proj: Projection::new(
                        &(&attn / "q_proj"),
                        c.hidden_size,
                        q_width,
                        c.qkv_bias,
                    ),
                    k_proj: Projection::new(
                        &(&attn / "k_proj"),
                        c.hidden_size,
                        kv_width,
                        c.qkv_bias,
                    ),
                    v_proj: Projection::new(
                        &(&attn / "v_proj"),
                        c.hidden_size,
                        kv_width,
                        c.qkv_bias,
                    ),
                    o_proj: Projection::new(&(&attn / "o_proj"), q_width, c.hidden_size, c.o_bias),
                    post_attention_layernorm: ones(
                        &(&layer / "post_attention_layernorm"),
                        c.hidden_size,
                    ),
                    gate_proj: Projection::new(
                        &(&mlp / "gate_proj"),
                        c.hidden_size,
                        c.intermediate_size,
                        c.mlp_bias,
                    ),
                    up_proj: Projection::new(
                        &(&mlp / "up_proj"),
                        c.hidden_size,
                        c.intermediate_size,
                        c.mlp_bias,
                    ),
                    down_proj: Projection::new(
                        &(&mlp / "down_proj"),
                        c.intermediate_size,
                        c.hidden_size,
                        c.mlp_bias,
                    ),
                }
            })
            .collect();
        let embedding = [i64::from(c.vocab_size), i64::from(c.hidden_size)];
        let init = nn::Init::Const(0.0);
        let half = i64::from(c.head_dim / 2);
        let exponents =
            Tensor::arange(half, (Kind::Float, root.device())) * 2.0 / f64::from(c.head_dim);
        Self {
            embed_tokens: (&model / "embed_tokens").var("weight", &embedding, init),
            layers,
            norm: ones(&(&model / "norm"), c.hidden_size),
            lm_head: (!c.tie_word_embeddings)
                .then(|| (root / "lm_head").var("weight", &embedding, init)),
            inv_freq: (Tensor::from(c.rope_theta)
                .to_kind(Kind::Float)
                .to_device(root.device())
                .pow(&exponents))
            .reciprocal(),
            config: config.clone(),
        }
    }

    /// Cosine and sine of the rotary angles at positions `start..start+time`,
    /// shaped `(1, 1, time, head_dim)`.
    fn rotary(&self, start: i64, time: i64, kind: Kind) -> Result<(Tensor, Tensor), TchError> {
        let positions =
            Tensor::f_arange_start(start, start + time, (Kind::Float, self.inv_freq.device()))?;
        let freqs = positions
            .f_unsqueeze(1)?
            .f_mul(&self.inv_freq.f_unsqueeze(0)?)?;
        let angles = Tensor::f_cat(&[&freqs, &freqs], -1)?.f_view([1, 1, time, -1])?;
        Ok((
            angles.f_cos()?.f_to_kind(kind)?,
            angles.f_sin()?.f_to_kind(kind)?,
        ))
    }

    fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> Result<Tensor, TchError> {
        x.f_rms_norm(
            [i64::from(self.config.hidden_size)],
            Some(weight),
            self.config.rms_norm_eps,
        )
    }

    #[expect(
        clippy::many_single_char_names,
        reason = "x, h, q, k, v as in the papers and in transformers"
    )]
    fn layer_forward(
        &self,
        layer: &Layer,
        x: &Tensor,
        rotary: &(Tensor, Tensor),
        cache: Option<&(Tensor, Tensor)>,
        start: i64,
    ) -> Result<Tensor, TchError> {
        let c = &self.config;
        let (batch, time, _) = x.size3()?;
        let head_dim = i64::from(c.head_dim);
        let heads = |t: Tensor, n: u32| {
            t.f_view([batch, time, i64::from(n), head_dim])?
                .f_transpose(1, 2)
        };
        let h = self.rms_norm(x, &layer.input_layernorm)?;
        let q = heads(layer.q_proj.forward(&h)?, c.num_attention_heads)?;
        let k = heads(layer.k_proj.forward(&h)?, c.num_key_value_heads)?;
        let v = heads(layer.v_proj.forward(&h)?, c.num_key_value_heads)?;
        let (q, k) = (rotate(&q, rotary)?, rotate(&k, rotary)?);
        let (keys, values, causal) = match cache {
            None => (k, v, true),
            Some((keys, values)) => {
                keys.f_narrow(2, start, time)?.f_copy_(&k)?;
                values.f_narrow(2, start, time)?.f_copy_(&v)?;
                if time > 1 && start != 0 {
                    return Err(TchError::Shape(format!(
                        "a multi-token step must start at position 0, not {start}"
                    )));
                }
                let seen = start + time;
                (
                    keys.f_narrow(2, 0, seen)?,
                    values.f_narrow(2, 0, seen)?,
                    time > 1,
                )
            }
        };
        // Grouped-query attention: each key/value head serves this many
        // query heads, in order (as transformers' repeat_kv).
        let group = i64::from(c.num_attention_heads / c.num_key_value_heads);
        let (keys, values) = if group > 1 {
            (
                keys.f_repeat_interleave_self_int(group, 1, None)?,
                values.f_repeat_interleave_self_int(group, 1, None)?,
            )
        } else {
            (keys, values)
        };
        let attended = Tensor::f_scaled_dot_product_attention(
            &q,
            &keys,
            &values,
            None::<Tensor>,
            0.0,
            causal,
            None,
            false,
        )?
        .f_transpose(1, 2)?
        .f_contiguous()?
        .f_view([batch, time, -1])?;
        let x = x.f_add(&layer.o_proj.forward(&attended)?)?;
        let h = self.rms_norm(&x, &layer.post_attention_layernorm)?;
        let gated = layer
            .gate_proj
            .forward(&h)?
            .f_silu()?
            .f_mul(&layer.up_proj.forward(&h)?)?;
        x.f_add(&layer.down_proj.forward(&gated)?)
    }

    fn run(
        &self,
        tokens: &Tensor,
        cache: Option<&KvCache>,
        start: i64,
    ) -> Result<Tensor, TchError> {
        let (_, time) = tokens.size2()?;
        let mut x = Tensor::f_embedding(&self.embed_tokens, tokens, -1, false, false)?;
        let rotary = self.rotary(start, time, x.kind())?;
        for (i, layer) in self.layers.iter().enumerate() {
            let kv = cache.map(|c| &c.layers()[i]);
            x = self.layer_forward(layer, &x, &rotary, kv, start)?;
        }
        Ok(x)
    }

    fn head(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let x = self.rms_norm(x, &self.norm)?;
        x.f_linear(
            self.lm_head.as_ref().unwrap_or(&self.embed_tokens),
            None::<Tensor>,
        )
    }
}

/// `x * cos + rotate_half(x) * sin`, with rotate_half as in transformers.
fn rotate(x: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Result<Tensor, TchError> {
    let half = x.size()[3] / 2;
    let first = x.f_narrow(3, 0, half)?;
    let second = x.f_narrow(3, half, half)?;
    let rotated = Tensor::f_cat(&[&second.f_neg()?, &first], 3)?;
    x.f_mul(cos)?.f_add(&rotated.f_mul(sin)?)
}

impl CausalLm for Llama {
    fn forward(&self, tokens: &Tensor) -> Result<Tensor, TchError> {
        let x = self.run(tokens, None, 0)?;
        self.head(&x)
    }

    fn new_cache(&self, batch: i64, capacity: i64, device: Device) -> Result<KvCache, TchError> {
        let c = &self.config;
        let capacity = capacity.clamp(1, i64::from(c.max_position_embeddings));
        KvCache::zeros(
            i64::from(c.num_hidden_layers),
            [
                batch,
                i64::from(c.num_key_value_heads),
                capacity,
                i64::from(c.head_dim),
            ],
            self.embed_tokens.kind(),
            device,
        )
    }

    fn forward_cached(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor, TchError> {
        let (_, time) = tokens.size2()?;
        let start = cache.reserve(time)?;
        let x = self.run(tokens, Some(cache), start)?;
        cache.advance(time);
        self.head(&x.f_select(1, time - 1)?)
    }

    fn vocab_size(&self) -> i64 {
        i64::from(self.config.vocab_size)
    }
}
