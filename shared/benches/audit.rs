//! The cost of tamper evidence per decision: linking one record into its
//! chain (a SHA-256 over the record's bytes and its predecessor's link), and
//! verifying one chained record (relinking plus parsing the record to check
//! its chain). Run with
//! `cargo bench -p governance --bench audit -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use governance::audit::{link_hash, partition_of, ChainEntry, Verifier, GENESIS};

/// A typical allow record as the decision log stores it (about 900 bytes).
const RECORD: &str = r#"{"decision_id":"01a20f5c-1460-7382-bf76-6a93027171be","trace_id":"c7ad03d7aa6840bc97596fe5ce682ad8","timestamp":"2026-11-24T21:00:22.496Z","decision":"allow","reasons":[{"code":"allowed","message":"the agent's grant, the user's role and the context all permit this call"}],"determining_policies":["base:permit-granted"],"agent_id":"agent-support-1","agent_version":"1.4.0","user_id":"alice","user_roles":["support_agent"],"tool_id":"search_kb","arguments_hash":"sha256:548070dbcd7b4216d49e222c2aca41c8e1b5c529ac68f4b330080eb7652bd30b","arguments":{"query":"vpn"},"environment":"dev","policy_version":"26a8f20f613611324cad6edf8c0ec45587a04a7e74365c0629a602153bb2392c","policy_hash":"sha256:f123b19db44be8ca1549928f9da6fffb288ea4286b0cafa4567db0a42072c4d7","session_id":"s-42","reasoning":"The customer asked how to reset their VPN token; the knowledge base has the procedure.","latency_us":41}"#;

fn bench(c: &mut Criterion) {
    let partition = partition_of("agent-support-1");
    c.bench_function("audit/link_one_record", |b| {
        b.iter(|| {
            link_hash(
                black_box(&partition),
                black_box(1234),
                black_box(GENESIS),
                black_box(RECORD),
            )
        })
    });
    let chain: Vec<ChainEntry> = (0..1000)
        .scan(None::<(u64, String)>, |prev, _| {
            let e = ChainEntry::link(
                &partition,
                prev.as_ref().map(|(s, h)| (*s, h.as_str())),
                RECORD.to_owned(),
            );
            *prev = Some((e.seq, e.hash.clone()));
            Some(e)
        })
        .collect();
    c.bench_function("audit/verify_1000_records", |b| {
        b.iter(|| {
            let mut v = Verifier::new(None);
            for e in &chain {
                v.entry(black_box(e));
            }
            v.finish()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
