//! `aurae metrics`: the node's metrics, as a scraper would read them.

use aurae_client::AuraeClient;
use aurae_proto::v0::ScrapeRequest;

use crate::cli::ConnectArgs;

/// Prints the exposition (the Prometheus text format) as auraed renders it: it is both
/// readable and what tools parse, so there is no separate `--json`.
pub async fn run(connect: &ConnectArgs) -> anyhow::Result<()> {
    let client = AuraeClient::connect(&connect.options().resolve()?).await?;
    let scrape = client
        .metrics()
        .scrape(ScrapeRequest {})
        .await
        .map_err(super::rpc_error)?
        .into_inner();
    crate::output::write_stdout(scrape.text.as_bytes())
}
