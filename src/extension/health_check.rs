//! The `health_check` extension: `GET {path}` on its own endpoint answers 200
//! `{"status":"ok"}` while every pipeline runs, and 503 with a short JSON body
//! saying why otherwise: `starting`, `stopping`, or `memory_limited` (the
//! memory limiter refuses data). Served by shard 0; it reads only the
//! process-wide figures in `ProcessStats`.

use http::{header, HeaderValue, Method, Response, StatusCode};

use crate::{
    config::{Config, ExtensionConfig},
    net::body::ResponseBody,
    telemetry::{ProcessStats, Stats},
};

/// Where and on which path the health endpoint is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    pub endpoint: std::net::SocketAddr,
    pub path: String,
}

/// The enabled health_check extension, if any (it must be listed in
/// `service.extensions`, as in the Collector).
pub fn settings(config: &Config) -> Option<HealthSettings> {
    config
        .service
        .extensions
        .iter()
        .find_map(|id| match config.extensions.get(id) {
            Some(ExtensionConfig::HealthCheck { endpoint, path }) => Some(HealthSettings {
                endpoint: *endpoint,
                path: path.clone(),
            }),
            _ => None,
        })
}

/// The current health: HTTP status and JSON body.
pub fn status(stats: &Stats) -> (StatusCode, String) {
    let p = &stats.process;
    match p.phase.get() {
        ProcessStats::STARTING => (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"starting","message":"pipelines are starting"}"#.to_string(),
        ),
        ProcessStats::STOPPING => (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"stopping","message":"sluice is shutting down"}"#.to_string(),
        ),
        _ if p.limiter_enabled.get() == 1 && p.limiter_state.get() > 0 => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "status": "memory_limited",
                "message": "the memory limiter is refusing data",
                "used_bytes": p.limiter_used.get(),
                "soft_limit_bytes": p.limiter_soft.get(),
                "hard_limit_bytes": p.limiter_hard.get(),
            })
            .to_string(),
        ),
        _ => (StatusCode::OK, r#"{"status":"ok"}"#.to_string()),
    }
}

/// Answers one request to the health endpoint.
pub fn respond(stats: &Stats, path: &str, method: &Method, req_path: &str) -> Response<ResponseBody> {
    let (code, body) = if req_path != path {
        (StatusCode::NOT_FOUND, r#"{"status":"not_found"}"#.to_string())
    } else if method != Method::GET && method != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"status":"method_not_allowed"}"#.to_string(),
        )
    } else {
        status(stats)
    };
    let mut r = Response::new(ResponseBody::data(body));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_memory() {
        let stats = Stats::new(1, &[], &[]);
        let p = &stats.process;
        assert_eq!(status(&stats).0, StatusCode::SERVICE_UNAVAILABLE);
        assert!(status(&stats).1.contains("starting"));
        p.phase.set(ProcessStats::RUNNING);
        assert_eq!(status(&stats), (StatusCode::OK, r#"{"status":"ok"}"#.to_string()));
        p.limiter_state.set(1);
        assert_eq!(status(&stats).0, StatusCode::OK, "no limiter configured");
        p.limiter_enabled.set(1);
        let (code, body) = status(&stats);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains(r#""status":"memory_limited""#), "{body}");
        p.limiter_state.set(0);
        assert_eq!(status(&stats).0, StatusCode::OK);
        p.phase.set(ProcessStats::STOPPING);
        assert!(status(&stats).1.contains("stopping"));
        let r = respond(&stats, "/", &Method::GET, "/other");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn settings_need_service_listing() {
        let yaml = "receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:4317}}}}
exporters: {nop: {}}
extensions: {health_check: {endpoint: 127.0.0.1:13999, path: /health}}
service:
  extensions: [health_check]
  pipelines: {traces: {receivers: [otlp], exporters: [nop]}}
";
        let c = crate::config::load_str(yaml).unwrap();
        let s = settings(&c).unwrap();
        assert_eq!(s.path, "/health");
        assert_eq!(s.endpoint.port(), 13999);
    }
}
