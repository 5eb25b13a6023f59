//! Compiles the bench's etcd client (proto/etcdserverpb/kv.proto) with the vendored protoc, as
//! the root crate does, so no system protoc is needed. The `etcd-client` crate (same tonic
//! 0.14) would compile etcd's protos with whatever protoc is on the PATH, which this project's
//! machines and CI do not have.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/etcdserverpb/kv.proto"], &["proto"])?;
    Ok(())
}
