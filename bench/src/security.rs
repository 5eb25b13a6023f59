//! The cost of auth and TLS: W1 at 1 and 64 clients and W2 at 64 on the bench's own cluster
//! (a token on every call and mutual TLS between peers and on the API, as jepsen and a real
//! network run it) and on a second cluster of the same binary and settings with both off,
//! started beside it. Like `peers`, the two take turns within each round (the first alternates)
//! and each ratio is the median of its per-round ratios of secure / plain.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use raftline::client::Client;
use raftline_jepsen::cluster::{raftline_bin, Cluster};

use crate::peers::median;
use crate::{w1, w2, Bench, Figure, SETTINGS};

/// The shapes measured, as printed.
const SHAPES: [&str; 3] = ["W1 1 client", "W1 64 clients", "W2 64"];

/// Starts the plain cluster (auth off, no TLS) on ports from `base_port`.
async fn plain_bench(dir: &Path, base_port: u16) -> Result<Bench, String> {
    let mut c = Cluster::with_security(
        &dir.join("plain"),
        raftline_bin()?,
        3,
        base_port,
        SETTINGS,
        false,
        false,
    )?;
    for id in c.ids() {
        c.start(id)?;
    }
    c.wait_leader(Duration::from_secs(30))
        .await
        .ok_or("the plain cluster elected no leader")?;
    let clients = c
        .nodes
        .iter()
        .map(|n| {
            Client::with_access(&[n.api()], &c.access)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let http = c
        .nodes
        .iter()
        .map(|n| format!("{}:{}", n.ip, n.http_port))
        .collect();
    Ok(Bench {
        clients,
        http,
        http_ca: None,
        cluster: Some(c),
        results: Vec::new(),
        within: None,
    })
}

/// One shape on one cluster.
async fn measure(b: &mut Bench, shape: &str, secs: u64, tag: &str) -> Figure {
    match shape {
        "W1 1 client" => w1(b, 1, secs).await,
        "W1 64 clients" => w1(b, 64, secs).await,
        _ => w2(b, 64, secs, &format!("bench-security-{tag}")).await,
    }
}

/// The security section: `rounds` rounds, ending with the `security:` line of median ratios.
pub(crate) async fn run(b: &mut Bench, dir: &Path, base_port: u16, secs: u64, rounds: usize) {
    let mut plain = match plain_bench(dir, base_port).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("security: cannot start the plain cluster: {e}");
            return;
        }
    };
    let mut ratios: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in 0..rounds.max(1) {
        for shape in SHAPES {
            let mut rates = [0.0; 2];
            let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let (bench, mode) = if i == 0 {
                    (&mut *b, "auth+tls")
                } else {
                    (&mut plain, "plain")
                };
                println!("security   round {r}  {mode}");
                let mut within = serde_json::Map::new();
                within.insert("within".into(), "security".into());
                within.insert("mode".into(), mode.into());
                within.insert("round".into(), r.into());
                bench.within = Some(within);
                // A queue name: no `+`.
                let tag = format!("{}-{r}-{i}", shape.replace(' ', "-"));
                rates[i] = measure(bench, shape, secs, &tag).await.rate;
                bench.within = None;
            }
            if rates[1] > 0.0 {
                ratios.entry(shape).or_default().push(rates[0] / rates[1]);
            }
        }
    }
    b.results.append(&mut plain.results);
    let mut figures = serde_json::Map::new();
    for shape in SHAPES {
        let per_round = ratios.get(shape).map_or(&[][..], Vec::as_slice);
        let m = median(per_round);
        let each: Vec<String> = per_round.iter().map(|x| format!("{x:.2}")).collect();
        println!(
            "security   {shape:<14} auth+TLS / plain per round [{}]  median {}",
            each.join(", "),
            m.map_or("n/a".into(), |m| format!("{m:.2}"))
        );
        figures.insert(shape.into(), m.into());
    }
    b.record(serde_json::json!({
        "section": "security", "rounds": rounds, "median_ratio_secure_over_plain": figures,
    }));
}
