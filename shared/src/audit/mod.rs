//! The tamper-evident audit trail.
//!
//! Three layers are kept: the control plane (policy versions published and
//! activated, with the diff of what changed), the data plane (every decision
//! record) and the reasoning an agent attaches to a call (kept inside its
//! decision record). Every record is hash-linked into a chain ([`chain`]):
//! its link commits to its content and to its predecessor's link. Decisions
//! are spread over [`chain::DECISION_PARTITIONS`] chains by agent, so that no
//! single chain head serialises every writer; control-plane events have a
//! chain of their own. Periodic signed digests ([`digest`]) commit to every
//! chain's head, in the manner of CloudTrail's digest files, so a truncated
//! tail or a rewritten chain is caught too. [`verify`] checks all of it and
//! names the first broken link; [`explain`] tells one decision's story;
//! [`export`] writes records as JSON Lines or CSV; [`timeline`] lists one
//! agent's records for an incident, with the chain runs that show the list
//! is complete.

pub mod archive;
pub mod chain;
pub mod control;
pub mod digest;
pub mod explain;
pub mod export;
pub mod timeline;
pub mod verify;

pub use chain::{link_hash, partition_of, ChainEntry, CONTROL_PARTITION, GENESIS};
pub use control::{
    diff_bundles, BundleChange, ChangeNote, ControlAction, ControlEvent, ReviewOutcome,
};
pub use digest::{Digest, DigestHead, SignedDigest};
pub use verify::{verify_excerpt, ExcerptChecks, Finding, MinDigest, Report, TableHeads, Verifier};
