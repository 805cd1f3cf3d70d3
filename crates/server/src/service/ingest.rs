//! Placeholder: batch ingest (owned by the lead).
pub struct Ingestor;
