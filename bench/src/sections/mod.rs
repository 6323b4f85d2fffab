//! The measurements, one module a section of the report (the large
//! plugin start-up is in `startup`, with the small one).

pub mod etcd;
pub mod handoff;
pub mod languages;
pub mod memory;
pub mod startup;
pub mod throughput;
pub mod timeouts;
pub mod uncontended;
