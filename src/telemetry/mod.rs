//! What regauth tells its operators: logs, request ids, Prometheus metrics and the audit log.
//!
//! A lower layer: domains register what they count into [`metrics`], and nothing here
//! decides anything about a request.

pub mod audit;
pub mod logging;
pub mod metrics;
pub mod request_id;
