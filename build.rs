//! Compiles `proto/` (the gRPC ingest API) with protox, a Protobuf compiler in Rust, so that
//! a build needs no `protoc`: tonic's server and client code, and the descriptor set that
//! server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/openclaw/ingest/v1/ingest.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("ingest_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
