//! The `aurae.v0.Metrics` gRPC service: a scrape over the socket, for `aurae metrics`.

use std::sync::Arc;

use aurae_proto::v0 as pb;
use tonic::{Request, Response, Status};

use super::render;
use crate::context::Daemon;

/// The `aurae.v0.Metrics` gRPC service.
#[derive(Debug, Clone)]
pub struct MetricsService {
    daemon: Arc<Daemon>,
}

impl MetricsService {
    /// A service rendering `daemon`'s metrics.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }
}

#[tonic::async_trait]
impl pb::metrics_server::Metrics for MetricsService {
    async fn scrape(
        &self,
        _request: Request<pb::ScrapeRequest>,
    ) -> Result<Response<pb::ScrapeResponse>, Status> {
        let text = render::render(&self.daemon)?;
        Ok(Response::new(pb::ScrapeResponse {
            text,
            content_type: render::CONTENT_TYPE.to_owned(),
        }))
    }
}
