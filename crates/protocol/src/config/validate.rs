//! The checks of a config that its types alone cannot express: ranges,
//! and values that must agree with each other.

use std::fmt;

use super::types::Config;

/// A value that fails a check: the keys it is about, and why.
pub(super) struct Invalid {
    pub(super) keys: Vec<&'static str>,
    pub(super) message: String,
}

impl Invalid {
    fn of(key: &'static str, message: String) -> Self {
        Self {
            keys: vec![key],
            message,
        }
    }
}

impl Config {
    /// Range and consistency checks that types alone cannot express.
    pub(super) fn validate(&self) -> std::result::Result<(), Invalid> {
        fn at_least<T: PartialOrd + fmt::Display + Copy>(
            key: &'static str,
            value: T,
            min: T,
        ) -> std::result::Result<(), Invalid> {
            if value < min {
                return Err(Invalid::of(
                    key,
                    format!("{key} must be at least {min} (got {value})"),
                ));
            }
            Ok(())
        }
        fn at_most<T: PartialOrd + fmt::Display + Copy>(
            key: &'static str,
            value: T,
            max: T,
            why: &str,
        ) -> std::result::Result<(), Invalid> {
            if value > max {
                return Err(Invalid::of(
                    key,
                    format!("{key} must be at most {max} (got {value}): {why}"),
                ));
            }
            Ok(())
        }
        fn positive(key: &'static str, value: f64) -> std::result::Result<(), Invalid> {
            if !(value.is_finite() && value > 0.0) {
                return Err(Invalid::of(
                    key,
                    format!("{key} must be a number greater than 0 (got {value})"),
                ));
            }
            Ok(())
        }
        fn non_negative(key: &'static str, value: f64) -> std::result::Result<(), Invalid> {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Invalid::of(
                    key,
                    format!("{key} must be a number of 0 or more (got {value})"),
                ));
            }
            Ok(())
        }

        if self.run_dir.as_os_str().is_empty() {
            return Err(Invalid::of(
                "run_dir",
                "run_dir must not be empty".to_owned(),
            ));
        }
        for (key, path) in [
            ("data.train_file", &self.data.train_file),
            ("data.val_file", &self.data.val_file),
            ("data.tokenizer", &self.data.tokenizer),
        ] {
            if path.as_os_str().is_empty() {
                return Err(Invalid::of(key, format!("{key} must name a file")));
            }
        }
        let model = &self.model;
        at_least("model.n_layer", model.n_layer, 1)?;
        at_least("model.n_head", model.n_head, 1)?;
        at_least("model.n_embd", model.n_embd, 1)?;
        at_least("model.block_size", model.block_size, 2)?;
        let sizes = "larger than any model trainui can hold";
        at_most("model.n_layer", model.n_layer, 1024, sizes)?;
        at_most("model.n_head", model.n_head, 1024, sizes)?;
        at_most("model.n_embd", model.n_embd, 65_536, sizes)?;
        at_most("model.block_size", model.block_size, 1 << 20, sizes)?;
        if !model.n_embd.is_multiple_of(model.n_head) {
            return Err(Invalid {
                keys: vec!["model.n_embd", "model.n_head"],
                message: format!(
                    "model.n_embd ({}) must be a multiple of model.n_head ({})",
                    model.n_embd, model.n_head
                ),
            });
        }
        let train = &self.train;
        at_least("train.max_steps", train.max_steps, 1)?;
        at_least("train.batch_size", train.batch_size, 1)?;
        at_most(
            "train.batch_size",
            train.batch_size,
            1 << 20,
            "use train.grad_accum_steps for larger batches",
        )?;
        at_least("train.grad_accum_steps", train.grad_accum_steps, 1)?;
        at_most(
            "train.grad_accum_steps",
            train.grad_accum_steps,
            1 << 20,
            "more micro-batches than a step can hold",
        )?;
        positive("train.learning_rate", train.learning_rate)?;
        non_negative("train.min_learning_rate", train.min_learning_rate)?;
        if train.min_learning_rate > train.learning_rate {
            return Err(Invalid {
                keys: vec!["train.min_learning_rate", "train.learning_rate"],
                message: format!(
                    "train.min_learning_rate ({}) must not exceed train.learning_rate ({})",
                    train.min_learning_rate, train.learning_rate
                ),
            });
        }
        non_negative("train.weight_decay", train.weight_decay)?;
        non_negative("train.grad_clip", train.grad_clip)?;
        at_least("train.log_steps", train.log_steps, 1)?;
        let eval = &self.eval;
        at_least("eval.val_batches", eval.val_batches, 1)?;
        at_least("eval.max_new_tokens", eval.max_new_tokens, 1)?;
        non_negative("eval.temperature", eval.temperature)?;
        if !(0.0..=1.0).contains(&eval.timeout_warn_rate) {
            return Err(Invalid::of(
                "eval.timeout_warn_rate",
                format!(
                    "eval.timeout_warn_rate must be between 0 and 1 (got {})",
                    eval.timeout_warn_rate
                ),
            ));
        }
        at_least(
            "watchdog.stall_timeout_seconds",
            self.watchdog.stall_timeout_seconds.get(),
            1.0,
        )
        .map_err(|invalid| Invalid {
            message: format!(
                "{}: the watchdog looks a few times a second, so a shorter silence is no stall",
                invalid.message
            ),
            ..invalid
        })?;
        if self
            .alerts
            .command
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(Invalid::of(
                "alerts.command",
                "alerts.command is empty: give a shell command, or null for none".into(),
            ));
        }
        Ok(())
    }
}
