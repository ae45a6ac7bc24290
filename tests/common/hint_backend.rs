//! A scripted backend that answers exports with arbitrary (hostile) retry
//! hints before accepting: raw gRPC `RetryInfo` durations (any `seconds` /
//! `nanos`, negative or overflowing) on the OTLP gRPC trace service, and raw
//! `Retry-After` header values on OTLP/HTTP `/v1/traces`. Each export attempt
//! takes the next hint of the script and is refused with it; once the script
//! is used up, exports are accepted and their spans counted.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::{count_spans, ProtoAny, ProtoDuration, RetryInfo, RpcStatus};

/// One refusal.
#[derive(Clone, Debug)]
pub enum Hint {
    /// gRPC: this status code with a RetryInfo of exactly these fields.
    Grpc {
        code: tonic::Code,
        seconds: i64,
        nanos: i32,
    },
    /// HTTP: this status with this raw `Retry-After` value.
    Http { status: u16, retry_after: &'static str },
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Hint>>,
    attempts: AtomicU64,
    spans: AtomicU64,
}

impl State {
    /// The hint to refuse this attempt with, if the script is not used up.
    fn next(&self) -> Option<Hint> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.script.lock().unwrap().pop_front()
    }
}

/// A running scripted backend (gRPC or HTTP, per constructor).
pub struct HintBackend {
    pub port: u16,
    st: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HintBackend {
    /// A gRPC trace service refusing with `script`'s hints, in order.
    pub async fn grpc(script: Vec<Hint>) -> HintBackend {
        let st = Arc::new(State::default());
        *st.script.lock().unwrap() = script.into();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let svc = TraceServiceServer::new(GrpcSvc(st.clone())).max_decoding_message_size(64 << 20);
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
        });
        HintBackend {
            port,
            st,
            stop: Some(tx),
        }
    }

    /// An OTLP/HTTP backend refusing `/v1/traces` with `script`'s hints, in order.
    pub async fn http(script: Vec<Hint>) -> HintBackend {
        let st = Arc::new(State::default());
        *st.script.lock().unwrap() = script.into();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        super::serve_http1(listener, rx, st.clone(), http_handle);
        HintBackend {
            port,
            st,
            stop: Some(tx),
        }
    }

    /// Export attempts seen so far (refused and accepted).
    pub fn attempts(&self) -> u64 {
        self.st.attempts.load(Ordering::SeqCst)
    }

    /// Spans accepted so far.
    pub fn spans(&self) -> u64 {
        self.st.spans.load(Ordering::SeqCst)
    }

    /// Hints not used yet.
    pub fn hints_left(&self) -> usize {
        self.st.script.lock().unwrap().len()
    }

    /// Refuses every further attempt with `hint` (the script never runs out).
    pub fn refuse_forever(&self, hint: Hint) {
        let mut s = self.st.script.lock().unwrap();
        s.clear();
        s.extend(std::iter::repeat_n(hint, 1 << 20));
    }

    /// Polls `pred` every 20 ms until it holds or `timeout` passes.
    pub async fn wait_for(&self, timeout: Duration, mut pred: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for HintBackend {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Clone)]
struct GrpcSvc(Arc<State>);

#[tonic::async_trait]
impl TraceService for GrpcSvc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        match self.0.next() {
            Some(Hint::Grpc { code, seconds, nanos }) => {
                let ri = RetryInfo {
                    retry_delay: Some(ProtoDuration { seconds, nanos }),
                };
                let details = RpcStatus {
                    code: code as i32,
                    message: "hint backend: retry later".into(),
                    details: vec![ProtoAny {
                        type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                        value: ri.encode_to_vec(),
                    }],
                }
                .encode_to_vec();
                Err(tonic::Status::with_details(
                    code,
                    "hint backend: retry later",
                    Bytes::from(details),
                ))
            }
            Some(other) => panic!("gRPC backend scripted with {other:?}"),
            None => {
                self.0.spans.fetch_add(count_spans(req.get_ref()), Ordering::SeqCst);
                Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
            }
        }
    }
}

async fn http_handle(st: Arc<State>, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let reply = |status: u16| hyper::Response::builder().status(status);
    if path != "/v1/traces" {
        return reply(404).body(Full::new(Bytes::new())).unwrap();
    }
    match st.next() {
        Some(Hint::Http { status, retry_after }) => reply(status)
            .header("retry-after", retry_after)
            .body(Full::new(Bytes::new()))
            .unwrap(),
        Some(other) => panic!("HTTP backend scripted with {other:?}"),
        None => match ExportTraceServiceRequest::decode(&body[..]) {
            Ok(r) => {
                st.spans.fetch_add(count_spans(&r), Ordering::SeqCst);
                reply(200)
                    .header("content-type", "application/x-protobuf")
                    .body(Full::new(Bytes::from(
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )))
                    .unwrap()
            }
            Err(_) => reply(400).body(Full::new(Bytes::new())).unwrap(),
        },
    }
}
