//! Steering a run from outside its process: a spool folder RUN_DIR/control/
//! where `trainui ctl` (and `watch`) drop small JSON command files, and
//! live changes of RUN_DIR/config.json.
//!
//! A command file is `{"v": 2, "id": ..., "created_unix": ..., "command":
//! COMMAND}`, COMMAND being a serialised [`Command`](crate::events::Command)
//! (`"eval_now"`, `{"set": {"eval.eval_steps": 100}}`); files of version 1
//! (`"command": "eval"`, or `"set"` with an `"assignment"`) are still read.
//! Every request is answered with a `control` event in events.jsonl:
//! accepted (then the trainer's own `command_ack` follows) or rejected,
//! with the reason. A bad file never stops the run.
//!
//! The parts: a command file, its format and where it goes (request.rs),
//! the checks that only the run's owner can steer it (checks.rs), the
//! sender's side (send.rs) and the run's (spool.rs).

mod checks;
mod request;
mod send;
mod spool;

pub use checks::{check_spool, owned_by_me_alone};
pub use request::{
    MAX_REQUEST_BYTES, REQUEST_VERSION, Request, SPOOL_DIR, STALE_AFTER, spool_dir, unix_now,
};
pub use send::{DELIVERED_PREFIX, deliver, send, withdraw, withdraw_own};
pub use spool::Spool;
