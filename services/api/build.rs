//! Compiles `proto/refnet/v1` with protox (pure Rust: no system `protoc`) and
//! generates prost types and tonic clients and servers, plus the descriptor
//! set used for reflection and for reading the sensitivity options.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = ["common", "intake", "routing", "protection", "sensitivity"]
        .map(|name| root.join(format!("refnet/v1/{name}.proto")));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(&files)?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // The encoded set keeps custom options (the sensitivity classes), which
    // prost_types would drop; reflection and the redactor read it.
    std::fs::write(
        out.join("refnet_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .skip_protoc_run()
        .compile_fds(fds)?;
    Ok(())
}
