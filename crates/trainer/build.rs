//! Lets the binary find libtorch at run time without `LD_LIBRARY_PATH`.
//!
//! torch-sys reports the libtorch library folder it linked against (as
//! `DEP_TCH_LIBTORCH_LIB`); this adds it as an rpath. When the folder holds
//! `libtorch_cuda.so`, that library is linked into `trainui-torch` with
//! `--no-as-needed`: nothing references it directly, and without it
//! libtorch never registers CUDA.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // Only the program that trains keeps libtorch_cuda without a reference
    // to it; `trainui` itself links no libtorch at all.
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!(
            "cargo:rustc-link-arg-bin=trainui-torch=-Wl,--no-as-needed,-ltorch_cuda,--as-needed"
        );
    }
}
