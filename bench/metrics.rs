//! Metrics overhead benchmark: the unary `System/Status` round trip over mTLS on the
//! socket (the client of the foundation benchmark) on a node that measures every call,
//! against the same call on a node started with `--no-metrics` (the RPC metrics layer
//! not installed).
//!
//! Both daemons run at once on this machine; rounds alternate between them, and which
//! goes first alternates too, so that drift (CPU frequency, other work on the machine)
//! falls on both alike. The run has two phases with the daemons' roles swapped (the
//! first daemon started measures in one, the second in the other): an A/A run showed
//! the first daemon about 1% slower whatever its flags. Prints p50, p99, mean and the
//! mean of the fastest 99% of each (the plain mean follows the machine's worst
//! stalls), the overhead against the target (under 3%), and the cost of one scrape; it
//! measures, it does not assert. `AURAE_BENCH_AA=1` runs both nodes with metrics on, to
//! show the noise of the comparison itself.
//!
//! The round trips' noise on a shared machine is larger than the layer's cost, so the
//! layer is also timed in process, without a socket: a unary call through the layer
//! around a service that answers at once (a message, then `grpc-status: 0` trailers),
//! body read to its end, against the same call without the layer.

#[path = "common.rs"]
mod common;

use std::convert::Infallible;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aurae_client::{AuraeClient, Identity};
use aurae_proto::v0::metrics_client::MetricsClient;
use aurae_proto::v0::system_client::SystemClient;
use aurae_proto::v0::{ScrapeRequest, StatusRequest};
use auraed::server::metrics::{MetricsLayer, RpcMetrics};
use common::{Setup, percentile, serving_auraed_with, setup};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use tonic::transport::Channel;
use tower::{Layer, Service};

/// Rounds per phase (two phases).
const ROUNDS: usize = 10;
const CALLS_PER_ROUND: usize = 2_000;
const WARMUP_ROUNDS: usize = 3;
const SCRAPES: usize = 200;
/// Calls per block of the in-process measure, and blocks per arm.
const LAYER_CALLS: usize = 100_000;
const LAYER_BLOCKS: usize = 10;

/// A unary reply as tonic makes one: a message, then trailers saying OK.
struct Reply {
    message: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl Reply {
    fn ok() -> Self {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        Self {
            message: Some(Bytes::from_static(&[0, 0, 0, 0, 2, 8, 1])),
            trailers: Some(trailers),
        }
    }
}

impl http_body::Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let frame = match (self.message.take(), self.trailers.take()) {
            (Some(message), trailers) => {
                self.trailers = trailers;
                Some(http_body::Frame::data(message))
            }
            (None, Some(trailers)) => Some(http_body::Frame::trailers(trailers)),
            (None, None) => None,
        };
        Poll::Ready(frame.map(Ok))
    }
}

type Answer = std::future::Ready<Result<http::Response<tonic::body::Body>, Infallible>>;

/// A service answering every call at once with [`Reply::ok`].
fn answering() -> impl Service<
    http::Request<()>,
    Response = http::Response<tonic::body::Body>,
    Error = Infallible,
    Future = Answer,
> + Clone {
    tower::service_fn(|_: http::Request<()>| -> Answer {
        std::future::ready(Ok(http::Response::new(tonic::body::Body::new(Reply::ok()))))
    })
}

/// Time per call of `LAYER_CALLS` calls to `service`, each body read to its end.
async fn layer_block<S>(service: &mut S) -> Duration
where
    S: Service<http::Request<()>, Response = http::Response<tonic::body::Body>, Error = Infallible>,
{
    let start = Instant::now();
    for _ in 0..LAYER_CALLS {
        let request = http::Request::builder()
            .uri("/aurae.v0.System/Status")
            .body(())
            .expect("a request");
        let response = service.call(request).await.expect("infallible");
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            std::hint::black_box(frame.expect("a frame"));
        }
    }
    start.elapsed() / u32::try_from(LAYER_CALLS).expect("few calls")
}

/// The median time per call without and with the layer, blocks interleaved.
async fn layer_cost() -> (Duration, Duration) {
    let mut bare = answering();
    let mut metered =
        MetricsLayer::new(Arc::new(RpcMetrics::new(auraed::CAPABILITIES))).layer(answering());
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..LAYER_BLOCKS {
        without.push(layer_block(&mut bare).await);
        with.push(layer_block(&mut metered).await);
    }
    without.sort();
    with.sort();
    (percentile(&without, 0.5), percentile(&with, 0.5))
}

async fn channel(sock: &Path, admin: &Identity) -> Channel {
    aurae_client::connect_mtls(sock, admin)
        .await
        .expect("connect")
}

async fn round(
    system: &mut SystemClient<aurae_client::Channel>,
    calls: usize,
    times: &mut Vec<Duration>,
) {
    for _ in 0..calls {
        let start = Instant::now();
        system.status(StatusRequest {}).await.expect("status");
        times.push(start.elapsed());
    }
}

/// Sorted durations of `SCRAPES` scrapes over the socket, and the size of the last one.
async fn scrapes(metrics: &mut MetricsClient<aurae_client::Channel>) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(SCRAPES);
    let mut size = 0;
    for _ in 0..SCRAPES {
        let start = Instant::now();
        let text = metrics
            .scrape(ScrapeRequest {})
            .await
            .expect("scrape")
            .into_inner()
            .text;
        times.push(start.elapsed());
        size = text.len();
    }
    times.sort();
    (times, size)
}

fn micros(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn mean(times: &[Duration]) -> Duration {
    times.iter().sum::<Duration>() / u32::try_from(times.len()).expect("few calls")
}

fn overhead(on: Duration, off: Duration) -> f64 {
    (on.as_secs_f64() / off.as_secs_f64() - 1.0) * 100.0
}

/// The calls timed on the measuring node and on the other one.
#[derive(Default)]
struct Timings {
    on: Vec<Duration>,
    off: Vec<Duration>,
}

/// One phase: `measuring` (0 or 1) of the two setups' daemons measures calls, the other
/// does not (or does too, in an A/A run); rounds alternate between them.
async fn phase(auraed: &str, setups: &[Setup; 2], measuring: usize, aa: bool, into: &mut Timings) {
    let mut daemons = Vec::new();
    let mut clients = Vec::new();
    for (slot, setup) in setups.iter().enumerate() {
        let sock = setup.root.join(format!("phase-{measuring}.sock"));
        let flags: &[&str] = if slot == measuring || aa {
            &[]
        } else {
            &["--no-metrics"]
        };
        daemons.push(serving_auraed_with(auraed, setup, &sock, flags).await);
        clients.push(AuraeClient::from_channel(channel(&sock, &setup.admin).await).system());
    }
    let (first, second) = clients.split_at_mut(1);
    let (a, b) = (&mut first[0], &mut second[0]);
    let (on, off) = if measuring == 0 { (a, b) } else { (b, a) };
    for _ in 0..WARMUP_ROUNDS {
        round(on, CALLS_PER_ROUND, &mut Vec::new()).await;
        round(off, CALLS_PER_ROUND, &mut Vec::new()).await;
    }
    for i in 0..ROUNDS {
        if i % 2 == 0 {
            round(on, CALLS_PER_ROUND, &mut into.on).await;
            round(off, CALLS_PER_ROUND, &mut into.off).await;
        } else {
            round(off, CALLS_PER_ROUND, &mut into.off).await;
            round(on, CALLS_PER_ROUND, &mut into.on).await;
        }
    }
    for daemon in &mut daemons {
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
}

/// The mean of the fastest 99% of sorted `times`.
fn trimmed_mean(times: &[Duration]) -> Duration {
    mean(&times[..times.len() * 99 / 100])
}

fn row(name: &str, times: &[Duration]) {
    println!(
        "{name:<48} {:>10} {:>10} {:>10} {:>10}",
        micros(percentile(times, 0.5)),
        micros(percentile(times, 0.99)),
        micros(mean(times)),
        micros(trimmed_mean(times))
    );
}

fn overhead_row(name: &str, on: Duration, off: Duration) {
    let pct = overhead(on, off);
    println!(
        "{name:<48} {:>10}   target < 3%: {}",
        format!("{pct:+.1}%"),
        if pct < 3.0 { "met" } else { "NOT met" }
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("metrics: bench");
        return;
    }
    let auraed = env!("CARGO_BIN_EXE_auraed");
    let aa = std::env::var_os("AURAE_BENCH_AA").is_some();
    let (bare, metered) = layer_cost().await;
    let setups = [setup(), setup()];
    let mut timings = Timings::default();
    for measuring in [0, 1] {
        phase(auraed, &setups, measuring, aa, &mut timings).await;
    }
    let sock = setups[0].root.join("scrape.sock");
    let mut daemon = serving_auraed_with(auraed, &setups[0], &sock, &[]).await;
    let channel = channel(&sock, &setups[0].admin).await;
    let (scrape_times, scrape_bytes) =
        scrapes(&mut AuraeClient::from_channel(channel).metrics()).await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    let Timings { mut on, mut off } = timings;
    on.sort();
    off.sort();

    println!();
    println!(
        "Aurae metrics overhead benchmark ({} Status calls per node, in 2 x {ROUNDS} alternating rounds, roles swapped)",
        on.len()
    );
    println!(
        "{:<48} {:>10} {:>10} {:>10} {:>10}",
        "System/Status over mTLS on the socket", "p50", "p99", "mean", "mean<=p99"
    );
    row("metrics on (every call counted and timed)", &on);
    row(
        if aa {
            "metrics on (A/A run: AURAE_BENCH_AA)"
        } else {
            "--no-metrics (layer not installed)"
        },
        &off,
    );
    overhead_row(
        "overhead of metrics, p50",
        percentile(&on, 0.5),
        percentile(&off, 0.5),
    );
    overhead_row("overhead of metrics, mean", mean(&on), mean(&off));
    overhead_row(
        "overhead of metrics, mean of the fastest 99%",
        trimmed_mean(&on),
        trimmed_mean(&off),
    );
    let nanos = |d: Duration| format!("{} ns", d.as_nanos());
    println!(
        "{:<48} {:>10} {:>10} {:>10}",
        "in process, per call (no socket)", "bare", "metered", "layer"
    );
    println!(
        "{:<48} {:>10} {:>10} {:>10}   = {:.2}% of the p50 round trip",
        "unary call through the layer, body read",
        nanos(bare),
        nanos(metered),
        nanos(metered.saturating_sub(bare)),
        metered.saturating_sub(bare).as_secs_f64() / percentile(&off, 0.5).as_secs_f64() * 100.0
    );
    println!(
        "{:<48} {:>10} {:>10}   ({scrape_bytes} bytes)",
        format!("Metrics/Scrape over the socket ({SCRAPES} scrapes)"),
        micros(percentile(&scrape_times, 0.5)),
        micros(percentile(&scrape_times, 0.99)),
    );
}
