//! Compiles the benchmark protos, as a user's build script would.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = protogate_build::protos_under("proto")?;
    protogate_build::configure().compile(&protos, &["proto"])?;
    Ok(())
}
