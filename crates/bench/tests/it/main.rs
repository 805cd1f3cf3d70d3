//! The harness's integration tests: one binary, as everywhere in the workspace.

mod smoke;
