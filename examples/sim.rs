//! Runs the reference simulator standalone until Ctrl-C, for performance
//! measurements before `rehab-canary sim` is wired:
//! `cargo run --release --example sim -- 127.0.0.1:8088 [config.toml]`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8088".into())
        .parse()?;
    let config = args.next().map(std::path::PathBuf::from);
    rehab_canary::sim::run_standalone(listen, config.as_deref()).await?;
    Ok(())
}
