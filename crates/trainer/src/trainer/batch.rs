//! Turns examples into padded `(input, target)` batches in a seeded order.
//!
//! The order is a function of (seed, micro-batch index) alone: each epoch is a
//! fresh permutation drawn from the seed and the epoch number, so a resumed
//! run sees exactly the batches it would have seen without stopping.

use tch::{Device, Tensor};

use crate::data::Example;

use super::rng::{SplitMix64, derive_seed};

/// Target value the loss ignores (prompt tokens and padding).
pub const IGNORE_INDEX: i64 = -100;

/// One micro-batch on the training device.
pub struct Batch {
    pub input: Tensor,
    pub target: Tensor,
    /// Tokens that are not padding.
    pub tokens: u64,
    /// Target positions the loss counts (completion and end-of-text).
    pub targets: u64,
}

/// Draws micro-batches from a dataset in a reproducible shuffled order.
pub struct Batcher<'a> {
    examples: &'a [Example],
    batch_size: usize,
    seed: u64,
    device: Device,
    epoch: Option<(u64, Vec<usize>)>,
}

impl<'a> Batcher<'a> {
    #[must_use]
    pub fn new(examples: &'a [Example], batch_size: usize, seed: u64, device: Device) -> Self {
        Self {
            examples,
            batch_size,
            seed,
            device,
            epoch: None,
        }
    }

    /// Index into the dataset of the `position`-th example drawn.
    fn example_at(&mut self, position: u64) -> usize {
        let len = self.examples.len() as u64;
        let epoch = position / len;
        if self
            .epoch
            .as_ref()
            .is_none_or(|(cached, _)| *cached != epoch)
        {
            let mut rng = SplitMix64::new(derive_seed(self.seed, &[epoch]));
            let mut order: Vec<usize> = (0..self.examples.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            self.epoch = Some((epoch, order));
        }
        let (_, order) = self.epoch.as_ref().expect("filled just above");
        order[(position % len) as usize]
    }

    /// The `index`-th micro-batch of the run.
    pub fn batch(&mut self, index: u64) -> Batch {
        let start = index * self.batch_size as u64;
        let chosen: Vec<usize> = (0..self.batch_size as u64)
            .map(|offset| self.example_at(start + offset))
            .collect();
        pad(chosen.iter().map(|&i| &self.examples[i]), self.device)
    }
}

/// Pads examples to the longest one. Inputs are the tokens but the last;
/// targets are the next tokens, with the prompt and padding ignored.
pub fn pad<'e>(
    examples: impl ExactSizeIterator<Item = &'e Example> + Clone,
    device: Device,
) -> Batch {
    let rows = examples.len();
    let time = examples
        .clone()
        .map(|e| e.tokens.len() - 1)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut input = vec![0i64; rows * time];
    let mut target = vec![IGNORE_INDEX; rows * time];
    let (mut tokens, mut targets) = (0, 0);
    for (row, example) in examples.enumerate() {
        let len = example.tokens.len() - 1;
        let base = row * time;
        for t in 0..len {
            input[base + t] = i64::from(example.tokens[t]);
            if t + 1 >= example.prompt_len {
                target[base + t] = i64::from(example.tokens[t + 1]);
                targets += 1;
            }
        }
        tokens += len as u64;
    }
    let shape = [rows as i64, time as i64];
    Batch {
        input: Tensor::from_slice(&input).view(shape).to_device(device),
        target: Tensor::from_slice(&target).view(shape).to_device(device),
        tokens,
        targets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(tokens: &[u32], prompt_len: usize) -> Example {
        Example {
            tokens: tokens.to_vec(),
            prompt_len,
            origin: String::new(),
        }
    }

    #[test]
    fn padding_masks_prompt_and_pad_positions() {
        let examples = [example(&[5, 6, 7, 9], 2), example(&[1, 2, 9], 1)];
        let batch = pad(examples.iter(), Device::Cpu);
        let input: Vec<i64> = Vec::try_from(batch.input.flatten(0, -1)).unwrap();
        let target: Vec<i64> = Vec::try_from(batch.target.flatten(0, -1)).unwrap();
        assert_eq!(input, [5, 6, 7, 1, 2, 0]);
        assert_eq!(target, [-100, 7, 9, 2, 9, -100]);
        assert_eq!(batch.tokens, 5);
        assert_eq!(batch.targets, 4, "the target positions that are not -100");
    }

    #[test]
    fn every_example_is_seen_once_per_epoch_in_a_seeded_order() {
        let examples: Vec<Example> = (0..10).map(|i| example(&[i, 9], 1)).collect();
        let first_token =
            |batch: &Batch| -> Vec<i64> { Vec::try_from(batch.input.flatten(0, -1)).unwrap() };
        let mut a = Batcher::new(&examples, 5, 7, Device::Cpu);
        let mut epoch: Vec<i64> = first_token(&a.batch(0));
        epoch.extend(first_token(&a.batch(1)));
        let mut sorted = epoch.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<i64>>());
        assert_ne!(
            epoch,
            (0..10).collect::<Vec<i64>>(),
            "the order is shuffled"
        );

        // A fresh batcher jumping straight to batch 1 (a resumed run) agrees.
        let mut b = Batcher::new(&examples, 5, 7, Device::Cpu);
        assert_eq!(first_token(&b.batch(1)), epoch[5..].to_vec());
        let mut other_seed = Batcher::new(&examples, 5, 8, Device::Cpu);
        assert_ne!(first_token(&other_seed.batch(0)), epoch[..5].to_vec());
    }
}
