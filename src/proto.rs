//! OTLP protobuf types generated at build time (prost, with `Bytes` for byte
//! fields). Use these where a processor or a test needs a full decode; the
//! hot path works on the wire format, and OTLP/JSON is transcoded on the wire
//! by `otlp_json`.

#![allow(clippy::all, missing_docs, rustdoc::all)]

macro_rules! otlp_mod {
    ($file:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $file, ".rs"));
    };
}

pub mod common {
    pub mod v1 {
        otlp_mod!("opentelemetry.proto.common.v1");
    }
}
pub mod resource {
    pub mod v1 {
        otlp_mod!("opentelemetry.proto.resource.v1");
    }
}
pub mod trace {
    pub mod v1 {
        otlp_mod!("opentelemetry.proto.trace.v1");
    }
}
pub mod metrics {
    pub mod v1 {
        otlp_mod!("opentelemetry.proto.metrics.v1");
    }
}
pub mod logs {
    pub mod v1 {
        otlp_mod!("opentelemetry.proto.logs.v1");
    }
}
pub mod collector {
    pub mod trace {
        pub mod v1 {
            otlp_mod!("opentelemetry.proto.collector.trace.v1");
        }
    }
    pub mod metrics {
        pub mod v1 {
            otlp_mod!("opentelemetry.proto.collector.metrics.v1");
        }
    }
    pub mod logs {
        pub mod v1 {
            otlp_mod!("opentelemetry.proto.collector.logs.v1");
        }
    }
}

pub use collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
pub use collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
pub use collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
