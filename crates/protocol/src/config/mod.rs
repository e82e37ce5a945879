//! Run configuration: a JSON file, `--set KEY=VALUE` overrides, and validation
//! whose messages name the dotted key, the source and the fix.
//!
//! Every key has a default, so a config file only says what differs. Unknown
//! keys are errors (a key that silently does nothing is how a timeout setting
//! once went unused for months), with the nearest valid key suggested.
//!
//! The parts: the types and their defaults (types.rs), reading a file and
//! `--set` (load.rs), the checks of values (validate.rs), the settings that
//! change while a run goes on (live.rs), and dotted keys (keys.rs).

mod keys;
mod live;
mod load;
mod types;
mod validate;

pub use keys::{differing_keys, lookup};
pub use live::{change_live, live_keys, live_settings};
pub use load::{
    COMMAND_KEYS, from_value, load, parse_assignment, read_file, read_saved, without_commands,
};
pub use types::{
    AlertsConfig, CheckpointConfig, Config, DataConfig, DevicePref, EvalConfig, GivenKeys,
    ModelConfig, OnStall, Overlong, Seconds, TensorboardConfig, TrainConfig, WatchdogConfig,
};
