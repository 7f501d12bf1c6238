//! End-to-end tests: the real `capgate` binary in front of a real upstream on
//! loopback, called over HTTP with real tokens. Every refusal is produced by
//! the real pipeline.

mod audit;
mod governance;
mod harness;
mod http2;
mod interop;
mod pipeline;
mod reasons;
mod sanitize;
mod startup;
