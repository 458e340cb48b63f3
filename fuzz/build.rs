//! The gRPC ingest messages, from the same `proto/` the server compiles (its build.rs), so that
//! the target decodes exactly what the server receives.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../proto/openclaw/ingest/v1/ingest.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["../proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
