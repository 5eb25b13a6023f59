//! The fuzz test's inputs (`tests/fuzz.rs`): random bodies, messages of each method's request
//! type built from the compiled service descriptor (at random, or every field at a limit's
//! edge), mutations of valid requests, and bodies no method can read; all drawn from a seeded
//! generator, so a seed replays them.

use std::collections::BTreeMap;

use prost::encoding::{decode_varint, encode_varint};
use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorSet};
use raftline::machine::limits;
use raftline::proto::pb;
use raftline::server::auth::METHODS;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Calls in one run unless `RAFTLINE_FUZZ_CASES` says otherwise; about 8 s in a debug build
/// on two cores.
const CASES_DEFAULT: usize = 6_000;
/// Largest random body of the common kind; one in 200 is instead near the message limit.
const RANDOM_BYTES_MAX: usize = 4096;

/// One call to make: the method, the body, and how the body was made.
pub struct Case {
    pub method: &'static str,
    pub body: Vec<u8>,
    pub how: &'static str,
    /// The body is a whole gRPC request body (5-byte frame headers included), sent as is.
    pub framed: bool,
}

impl Case {
    /// What a failure report shows of the case.
    pub fn label(&self) -> String {
        let head: String = self
            .body
            .iter()
            .take(24)
            .map(|b| format!("{b:02x}"))
            .collect();
        let len = self.body.len();
        format!("{} <- {} ({len} bytes: {head}..)", self.method, self.how)
    }
}

/// The key of `field` with wire type `wire`, appended to `out`.
fn key(field: u32, wire: u64, out: &mut Vec<u8>) {
    encode_varint((u64::from(field) << 3) | wire, out);
}

/// A field number: mostly the small ones requests use, sometimes any.
fn field(rng: &mut ChaCha8Rng) -> u32 {
    if rng.random_bool(0.8) {
        rng.random_range(1..=20)
    } else {
        rng.random_range(1..=(1 << 29) - 1)
    }
}

/// Random bytes of a random length; one body in 200 is near the message limit (some just
/// over it).
fn random_bytes(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let max = limits::API_MESSAGE_BYTES_MAX;
    let len = if rng.random_bool(0.005) {
        rng.random_range(max - 1024..=max + 1024)
    } else {
        rng.random_range(0..=RANDOM_BYTES_MAX)
    };
    let mut bytes = vec![0; len];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// Bytes that make any message fail to decode when appended after a whole message (a
/// message's fields end at its last byte, so these are read as a new key): a cut varint, a
/// length past the end (up to 4 GiB and beyond), a reserved wire type, field 0, an overlong
/// varint, or start-groups nested past prost's recursion limit and never closed.
fn poison(rng: &mut ChaCha8Rng) -> (Vec<u8>, &'static str) {
    let mut out = Vec::new();
    let how = match rng.random_range(0..7) {
        0 => {
            key(field(rng), 0, &mut out);
            let n = rng.random_range(1..=9);
            out.extend((0..n).map(|_| 0x80 | rng.random::<u8>()));
            "cut varint"
        }
        1 => {
            key(field(rng), 2, &mut out);
            encode_varint(4 << 30, &mut out);
            out.extend(std::iter::repeat_n(0xab, rng.random_range(0..64)));
            "length of 4 GiB"
        }
        2 => {
            key(field(rng), 2, &mut out);
            encode_varint(u64::MAX - rng.random_range(0..1024), &mut out);
            "length near 2^64"
        }
        3 => {
            key(field(rng), rng.random_range(6..=7), &mut out);
            "reserved wire type"
        }
        4 => {
            out.push(rng.random_range(0..8));
            out.push(rng.random());
            "field 0"
        }
        5 => {
            out.extend([0xff; 10]);
            out.push(0x01);
            "overlong varint"
        }
        _ => {
            let f = field(rng);
            for _ in 0..rng.random_range(101..=5_000) {
                key(f, 3, &mut out);
            }
            "start-groups nested too deep"
        }
    };
    (out, how)
}

/// Valid requests of several methods, encoded: the material mutations start from.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use pb::create_schedule_request::Target;
    let job = pb::SubmitRequest {
        queue: "fuzz".into(),
        priority: 5,
        kind: Some(pb::submit_request::Kind::Payload(b"{\"n\":1}".to_vec())),
        max_attempts: 3,
        ..Default::default()
    };
    let step = |name: &str, after: &[&str]| pb::WorkflowStepSpec {
        name: name.into(),
        job: Some(job.clone()),
        depends_on: after
            .iter()
            .map(|s| pb::StepDependency {
                step: (*s).into(),
                condition: "success".into(),
            })
            .collect(),
        compensate: None,
    };
    let workflow = pb::SubmitWorkflowRequest {
        name: "wf".into(),
        failure_policy: "continue".into(),
        max_parallel: 2,
        steps: vec![step("a", &[]), step("b", &["a"])],
    };
    vec![
        ("Submit", job.encode_to_vec()),
        (
            "SubmitBatch",
            pb::SubmitBatchRequest {
                jobs: vec![job.clone(); 3],
            }
            .encode_to_vec(),
        ),
        ("SubmitWorkflow", workflow.encode_to_vec()),
        (
            "Lease",
            pb::LeaseRequest {
                worker_id: "fuzz-worker".into(),
                queues: vec!["fuzz".into()],
                max: 4,
                ttl_ms: 30_000,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "AcquireLock",
            pb::AcquireLockRequest {
                resource: "db".into(),
                owner: "fuzz".into(),
                ttl_ms: 5_000,
                wait_ms: 0,
            }
            .encode_to_vec(),
        ),
        (
            "CreateSchedule",
            pb::CreateScheduleRequest {
                name: "nightly".into(),
                cron: "0 3 * * *".into(),
                tz: "Europe/Paris".into(),
                target: Some(Target::Job(job.clone())),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "CreateTrigger",
            pb::CreateTriggerRequest {
                topic: "t".into(),
                target: Some(pb::create_trigger_request::Target::Workflow(workflow)),
            }
            .encode_to_vec(),
        ),
        (
            "CreateToken",
            pb::CreateTokenRequest {
                name: "fuzz".into(),
                role: "viewer".into(),
                queues: vec!["fuzz-*".into()],
                ttl_ms: 60_000,
            }
            .encode_to_vec(),
        ),
    ]
}

/// `seed` changed in one of several ways: a field rewritten with its framing kept (so the
/// body still decodes and reaches the handler), bytes flipped, cut, a slice doubled, a length
/// claiming far more than follows, nested deep, a varint field set to an extreme, random
/// bytes spliced in.
fn mutate(rng: &mut ChaCha8Rng, seed: &[u8]) -> (Vec<u8>, &'static str) {
    let mut b = seed.to_vec();
    let at = rng.random_range(0..=b.len());
    let how = match rng.random_range(0..12) {
        8.. => return (rewrite(rng, seed, 0), "field rewritten"),
        0 if !b.is_empty() => {
            for _ in 0..rng.random_range(1..=8) {
                let i = rng.random_range(0..b.len());
                b[i] ^= rng.random_range(1..=255u8);
            }
            "bytes flipped"
        }
        1 => {
            b.truncate(at);
            "cut"
        }
        2 => {
            let from = rng.random_range(0..=at);
            let slice = b[from..at].to_vec();
            for _ in 0..rng.random_range(1..=64) {
                b.splice(at..at, slice.iter().copied());
            }
            "slice doubled"
        }
        3 => {
            let mut claim = Vec::new();
            key(field(rng), 2, &mut claim);
            let len = [4 << 30, u64::MAX, u64::from(u32::MAX), 1 << 62][rng.random_range(0..4)];
            encode_varint(len, &mut claim);
            b.splice(at..at, claim);
            "length past the end"
        }
        4 => {
            let f = rng.random_range(1..=6);
            for _ in 0..rng.random_range(2..=2_000) {
                let mut outer = Vec::with_capacity(b.len() + 8);
                key(f, 2, &mut outer);
                encode_varint(b.len() as u64, &mut outer);
                outer.extend_from_slice(&b);
                b = outer;
            }
            "nested deep"
        }
        5 => {
            key(field(rng), 0, &mut b);
            let extreme = [u64::MAX, 1 << 63, u64::from(u32::MAX) + 1, i64::MIN as u64];
            encode_varint(extreme[rng.random_range(0..4)], &mut b);
            "extreme varint"
        }
        _ => {
            let mut junk = vec![0; rng.random_range(1..=64)];
            rng.fill_bytes(&mut junk);
            b.splice(at..at, junk);
            "random bytes spliced"
        }
    };
    (b, how)
}

/// Methods the fuzz leaves out: `SaveSnapshot` takes and streams a whole snapshot on every
/// call, which can outlast the fuzz's 2 s call deadline on a loaded machine; its request is
/// empty, and `tests/backup.rs` and `tests/security.rs` (every method, every role) cover it.
pub const NOT_FUZZED: &[&str] = &["SaveSnapshot"];

/// A random method of the table (not one of [`NOT_FUZZED`]).
fn method(rng: &mut ChaCha8Rng) -> &'static str {
    loop {
        let m = METHODS[rng.random_range(0..METHODS.len())].0;
        if !NOT_FUZZED.contains(&m) {
            return m;
        }
    }
}

/// `n` cases on random methods, a third each: random bytes; a message of the method's own
/// request type made from the service descriptor (so every RPC gets well-formed input, new
/// ones too), rewritten in one field half the time; a mutation of a valid request (the
/// method's own when there is one, else another method's).
pub fn fuzz_cases(rng: &mut ChaCha8Rng, n: usize) -> Vec<Case> {
    let (seeds, schema) = (seeds(), Schema::load());
    (0..n)
        .map(|_| {
            let method = method(rng);
            let (body, how) = match rng.random_range(0..3) {
                0 => (random_bytes(rng), "random bytes"),
                1 => {
                    let body = schema.message(&mut Fill::Random(rng), &schema.input(method), 0);
                    match rng.random_bool(0.5) {
                        true => (rewrite(rng, &body, 0), "typed, a field rewritten"),
                        false => (body, "typed"),
                    }
                }
                _ => {
                    let own = seeds.iter().find(|(m, _)| *m == method);
                    let (_, seed) = match own {
                        Some(s) if rng.random_bool(0.8) => s,
                        _ => &seeds[rng.random_range(0..seeds.len())],
                    };
                    mutate(rng, seed)
                }
            };
            Case {
                method,
                body,
                how,
                framed: false,
            }
        })
        .collect()
}

/// The request types of the `Api` service, from the descriptor set the build compiled.
pub struct Schema {
    /// Every message type by full name (`.raftline.v1.SubmitRequest`), nested ones included.
    types: BTreeMap<String, DescriptorProto>,
    /// Each method's input type.
    inputs: BTreeMap<String, String>,
}

impl Schema {
    pub fn load() -> Schema {
        let bytes = include_bytes!(concat!(env!("OUT_DIR"), "/raftline_descriptor.bin"));
        let set = FileDescriptorSet::decode(&bytes[..]).expect("descriptor set");
        let mut types = BTreeMap::new();
        let mut inputs = BTreeMap::new();
        for file in &set.file {
            let mut stack: Vec<(String, &DescriptorProto)> = file
                .message_type
                .iter()
                .map(|m| (format!(".{}", file.package()), m))
                .collect();
            while let Some((scope, m)) = stack.pop() {
                let name = format!("{scope}.{}", m.name());
                stack.extend(m.nested_type.iter().map(|n| (name.clone(), n)));
                types.insert(name, m.clone());
            }
            for service in file.service.iter().filter(|s| s.name() == "Api") {
                for m in &service.method {
                    inputs.insert(m.name().to_string(), m.input_type().to_string());
                }
            }
        }
        Schema { types, inputs }
    }

    pub fn input(&self, method: &str) -> String {
        self.inputs.get(method).expect("an Api method").clone()
    }

    /// A message of type `name`: each field present or not, repeated ones up to 3 times,
    /// values as `fill` says; nesting stops at depth 4.
    pub fn message(&self, fill: &mut Fill, name: &str, depth: u32) -> Vec<u8> {
        use prost_types::field_descriptor_proto::{Label, Type};
        let mut out = Vec::new();
        for f in &self.types.get(name).expect("a known type").field {
            let times = match (fill as &mut Fill, f.label()) {
                (Fill::Edge { .. }, _) => 1,
                (Fill::Random(rng), Label::Repeated) => rng.random_range(0..=3),
                (Fill::Random(rng), _) => u32::from(rng.random_bool(0.7)),
            };
            let number = u32::try_from(f.number()).expect("field number");
            for _ in 0..times {
                let (wire, value) = match f.r#type() {
                    Type::Message if depth < 4 => (2, self.message(fill, f.type_name(), depth + 1)),
                    Type::Message | Type::Group => continue,
                    Type::String | Type::Bytes => (2, fill.text()),
                    Type::Double | Type::Fixed64 | Type::Sfixed64 => {
                        (1, fill.number().to_le_bytes().to_vec())
                    }
                    Type::Float | Type::Fixed32 | Type::Sfixed32 => {
                        (5, (fill.number() as u32).to_le_bytes().to_vec())
                    }
                    _ => {
                        let mut v = Vec::new();
                        encode_varint(fill.number(), &mut v);
                        (0, v)
                    }
                };
                key(number, wire, &mut out);
                if wire == 2 {
                    encode_varint(value.len() as u64, &mut out);
                }
                out.extend(value);
            }
        }
        out
    }
}

/// How [`Schema::message`] fills fields.
pub enum Fill<'a> {
    /// Small numbers, limits and past them, and name-like strings, drawn at random.
    Random(&'a mut ChaCha8Rng),
    /// Every field once, every string `text_len` bytes of `a`, every number `number`.
    Edge { text_len: usize, number: u64 },
}

impl Fill<'_> {
    fn text(&mut self) -> Vec<u8> {
        match self {
            Fill::Random(rng) => text(rng),
            Fill::Edge { text_len, .. } => vec![b'a'; *text_len],
        }
    }

    fn number(&mut self) -> u64 {
        match self {
            Fill::Random(rng) => number_value(rng),
            Fill::Edge { number, .. } => *number,
        }
    }
}

/// A varint value: mostly small (ids, counts, flags), else a limit's edge or past it.
fn number_value(rng: &mut ChaCha8Rng) -> u64 {
    let edges = [60_000, 60_001, 3_600_001, 253_402_300_800_000, u64::MAX];
    match rng.random_range(0..4) {
        0 | 1 => rng.random_range(0..=10),
        2 => edges[rng.random_range(0..edges.len())],
        _ => rng.random(),
    }
}

/// `n` cases that no method can read: a whole valid message (or nothing) then [`poison`];
/// every fourth is instead a gRPC body with bad framing (a compressed flag without an
/// encoding, a flag that is not 0 or 1, a length past the end or of 4 GiB, a cut header, a
/// second message).
pub fn malformed_cases(rng: &mut ChaCha8Rng, n: usize) -> Vec<Case> {
    let seeds = seeds();
    (0..n)
        .map(|i| {
            let method = method(rng);
            let mut body = if rng.random_bool(0.7) {
                seeds[rng.random_range(0..seeds.len())].1.clone()
            } else {
                Vec::new()
            };
            let (tail, how) = poison(rng);
            body.extend(tail);
            if i % 4 != 0 {
                return Case {
                    method,
                    body,
                    how,
                    framed: false,
                };
            }
            let (body, how) = frame(rng, body);
            Case {
                method,
                body,
                how,
                framed: true,
            }
        })
        .collect()
}

/// A gRPC request body around `message` with its framing broken.
fn frame(rng: &mut ChaCha8Rng, message: Vec<u8>) -> (Vec<u8>, &'static str) {
    let len = u32::try_from(message.len()).expect("small message");
    let header = |flag: u8, len: u32| {
        let mut h = vec![flag];
        h.extend(len.to_be_bytes());
        h
    };
    let (mut body, how) = match rng.random_range(0..6) {
        0 => (header(1, len), "compressed flag without an encoding"),
        1 => (header(rng.random_range(2..=255), len), "flag not 0 or 1"),
        2 => (
            header(0, len + rng.random_range(1..=1_000)),
            "length past the end",
        ),
        3 => (header(0, u32::MAX), "frame of 4 GiB"),
        4 => {
            let mut h = header(0, len);
            h.truncate(rng.random_range(1..=4));
            return (h, "header cut");
        }
        _ => {
            let mut two = header(0, len);
            two.extend_from_slice(&message);
            two.extend(header(0, len));
            (two, "a second message")
        }
    };
    body.extend(message);
    (body, how)
}

/// A generator for one phase: the phases draw from separate streams of the seed, so raising
/// the case count of one leaves the inputs of the others as they were.
pub fn phase_rng(seed: u64, phase: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(phase);
    rng
}

/// The top-level fields of `msg` as (key, value), a length-delimited value without its length;
/// `None` when `msg` does not parse as fields.
fn fields(mut msg: &[u8]) -> Option<Vec<(u64, Vec<u8>)>> {
    fn take(msg: &mut &[u8], n: usize) -> Option<Vec<u8>> {
        let (value, rest) = msg.split_at_checked(n)?;
        *msg = rest;
        Some(value.to_vec())
    }
    let mut out = Vec::new();
    while !msg.is_empty() {
        let key = decode_varint(&mut msg).ok()?;
        let value = match key & 7 {
            0 => {
                let start = msg;
                decode_varint(&mut msg).ok()?;
                start[..start.len() - msg.len()].to_vec()
            }
            1 => take(&mut msg, 8)?,
            2 => {
                let len = usize::try_from(decode_varint(&mut msg).ok()?).ok()?;
                take(&mut msg, len)?
            }
            5 => take(&mut msg, 4)?,
            _ => return None,
        };
        out.push((key, value));
    }
    Some(out)
}

/// `msg` with one field, at some depth, given a value near a limit or past it, dropped or
/// repeated; the result is well-framed protobuf.
fn rewrite(rng: &mut ChaCha8Rng, msg: &[u8], depth: u32) -> Vec<u8> {
    let Some(mut fields) = fields(msg).filter(|f| !f.is_empty()) else {
        return text(rng);
    };
    let i = rng.random_range(0..fields.len());
    match (fields[i].0 & 7, rng.random_range(0..8)) {
        (_, 0) => drop(fields.remove(i)),
        (_, 1) => fields.push(fields[i].clone()),
        (2, 2..=4) if depth < 4 => fields[i].1 = rewrite(rng, &fields[i].1, depth + 1),
        (2, _) => fields[i].1 = text(rng),
        (0, _) => {
            let edges = [0, 1, 60_000, 60_001, 3_600_001, 253_402_300_800_000];
            let value = match rng.random_range(0..4) {
                0 => edges[rng.random_range(0..edges.len())],
                1 => u64::MAX - rng.random_range(0..2),
                2 => u64::from(u32::MAX) + rng.random_range(0..2),
                _ => rng.random(),
            };
            fields[i].1.clear();
            encode_varint(value, &mut fields[i].1);
        }
        _ => rng.fill_bytes(&mut fields[i].1),
    }
    let mut out = Vec::new();
    for (key, value) in fields {
        encode_varint(key, &mut out);
        if key & 7 == 2 {
            encode_varint(value.len() as u64, &mut out);
        }
        out.extend(value);
    }
    out
}

/// A string value: a name of a length near the 128-byte name limit or far past it, name
/// characters with a pattern's `*`, a multi-byte character, or bytes that are not UTF-8.
fn text(rng: &mut ChaCha8Rng) -> Vec<u8> {
    const NAME: &[u8] = b"abcXYZ019_.-*";
    let len = [0, 1, 127, 128, 129, 1_024, 70_000][rng.random_range(0..7)];
    const WORDS: &[&str] = &[
        "fuzz",
        "ready",
        "success",
        "viewer",
        "pause",
        "cancel",
        "continue",
        "UTC",
        "@every 1s",
    ];
    match rng.random_range(0..5) {
        4 => WORDS[rng.random_range(0..WORDS.len())].as_bytes().to_vec(),
        0 => vec![b'a'; len],
        1 => (0..rng.random_range(0..=200))
            .map(|_| NAME[rng.random_range(0..NAME.len())])
            .collect(),
        2 => "\u{e9}\u{1f600}".repeat(len / 6 + 1).into_bytes(),
        _ => {
            let mut bytes = vec![0; len];
            rng.fill_bytes(&mut bytes);
            bytes
        }
    }
}

/// The run's seed, from `RAFTLINE_FUZZ_SEED` or fresh; printed so a failure can be replayed.
pub fn seed() -> u64 {
    let seed = match std::env::var("RAFTLINE_FUZZ_SEED") {
        Ok(s) => s.trim().parse().expect("RAFTLINE_FUZZ_SEED is a u64"),
        Err(_) => getrandom::u64().expect("a random seed"),
    };
    eprintln!("fuzz: RAFTLINE_FUZZ_SEED={seed}");
    seed
}

/// Calls in this run.
pub fn case_count() -> usize {
    std::env::var("RAFTLINE_FUZZ_CASES").map_or(CASES_DEFAULT, |s| {
        s.trim().parse().expect("RAFTLINE_FUZZ_CASES is a count")
    })
}
