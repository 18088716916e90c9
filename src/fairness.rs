//! The fair start: the order of a concert's pre-queue, which anyone can check afterwards.
//!
//! When a concert is scheduled (`opensAt`), a secret 32-byte seed is drawn and its SHA-256 is
//! published at once as the commitment (`GET /v1/concerts/{id}/fairness`). At the cut, the fans
//! who joined before `opensAt` are ordered by [`order`]: ascending HMAC-SHA256(key = seed,
//! message = userId). Then the list hash (SHA-256 of the pre-queue's userIds sorted bytewise,
//! each followed by a newline) and the seed itself are published. Whoever has the admin listing
//! (or their own place in it) can recompute both hashes and the order: `queuegate
//! verify-shuffle`, or the few lines of Python in docs/explain-guarantees.md. The seed cannot be chosen
//! after the list is known (it was committed to before anyone joined), and the list cannot be
//! chosen after the seed is known (it is secret until the cut).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How the order is computed, as published with the seed.
pub const ALGORITHM: &str =
    "order: userIds ascending by HMAC-SHA256(key = hex-decoded seed, message = userId as UTF-8), \
     ties by userId; listHash: SHA-256 of the userIds sorted bytewise, each followed by \"\\n\"; \
     commitment: SHA-256 of the hex-decoded seed";

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// A fresh secret seed, as hex.
pub fn new_seed() -> String {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the OS has randomness");
    hex(&seed)
}

/// The published commitment to `seed` (hex): SHA-256 of its bytes, as hex.
pub fn commitment(seed: &str) -> Option<String> {
    Some(hex(&Sha256::digest(unhex(seed)?)))
}

/// SHA-256 of the userIds sorted bytewise, each followed by a newline, as hex.
pub fn list_hash<S: AsRef<str>>(users: &[S]) -> String {
    let mut sorted: Vec<&str> = users.iter().map(AsRef::as_ref).collect();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    for u in sorted {
        h.update(u.as_bytes());
        h.update(b"\n");
    }
    hex(&h.finalize())
}

/// The pre-queue's order under `seed` (hex): ascending HMAC-SHA256(seed, userId), ties by
/// userId. None when the seed is not hex.
pub fn order<S: AsRef<str>>(seed: &str, users: &[S]) -> Option<Vec<String>> {
    let key = unhex(seed)?;
    let mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    let mut keyed: Vec<([u8; 32], &str)> = users
        .iter()
        .map(|u| {
            let mut m = mac.clone();
            m.update(u.as_ref().as_bytes());
            (m.finalize().into_bytes().into(), u.as_ref())
        })
        .collect();
    keyed.sort_unstable();
    Some(keyed.into_iter().map(|(_, u)| u.to_owned()).collect())
}

/// What `GET /v1/concerts/{id}/fairness` publishes after the cut, checked against the queue's
/// head as the admin listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published<'a> {
    pub commitment: &'a str,
    pub seed: &'a str,
    pub list_hash: &'a str,
}

/// Checks a published shuffle against `head`, the first userIds of the queue in order (the
/// pre-queue is the first `head.len()` places, before anyone was admitted). Err says what does
/// not match.
pub fn verify(p: &Published<'_>, head: &[String]) -> Result<(), String> {
    let c = commitment(p.seed).ok_or("the seed is not hex")?;
    if c != p.commitment {
        return Err(format!("SHA-256 of the seed is {c}, not the published commitment {}", p.commitment));
    }
    let h = list_hash(head);
    if h != p.list_hash {
        return Err(format!(
            "the listing's first {} fans hash to {h}, not the published listHash {}",
            head.len(),
            p.list_hash
        ));
    }
    let want = order(p.seed, head).ok_or("the seed is not hex")?;
    match want.iter().zip(head).position(|(w, h)| w != h) {
        None => Ok(()),
        Some(i) => Err(format!("place {} holds {} where the seed puts {}", i + 1, head[i], want[i])),
    }
}

/// `queuegate verify-shuffle`: reads the published fairness document and the admin listing
/// (one page's `{"entries": [...]}`, or an array of entries) and checks them; the number of
/// pre-queued fans verified.
pub fn verify_files(fairness: &std::path::Path, listing: &std::path::Path) -> anyhow::Result<usize> {
    use anyhow::Context;
    let read = |p: &std::path::Path| -> anyhow::Result<serde_json::Value> {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
    };
    let f = read(fairness)?;
    let field = |name: &str| {
        f[name].as_str().ok_or_else(|| anyhow::anyhow!("{} has no {name:?} (is the cut done?)", fairness.display()))
    };
    let n = f["prequeued"].as_u64().ok_or_else(|| anyhow::anyhow!("{} has no \"prequeued\"", fairness.display()))?;
    let l = read(listing)?;
    let entries = l.get("entries").unwrap_or(&l).as_array().cloned().unwrap_or_default();
    let users: Vec<String> =
        entries.iter().filter_map(|e| e["userId"].as_str().map(str::to_owned)).take(n as usize).collect();
    anyhow::ensure!(
        users.len() as u64 == n,
        "the listing holds {} fans, the pre-queue {n}: take the listing before anyone is admitted",
        users.len()
    );
    let p = Published { commitment: field("commitment")?, seed: field("seed")?, list_hash: field("listHash")? };
    verify(&p, &users).map_err(|e| anyhow::anyhow!(e))?;
    Ok(users.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("fan-{i}")).collect()
    }

    #[test]
    fn the_order_is_a_function_of_seed_and_list_and_verifies() {
        let seed = new_seed();
        let list = users(50);
        let a = order(&seed, &list).unwrap();
        let mut shuffled_input = list.clone();
        shuffled_input.reverse();
        assert_eq!(order(&seed, &shuffled_input).unwrap(), a, "the input order does not matter");
        assert_ne!(order(&new_seed(), &list).unwrap(), a, "another seed, another order");
        let c = commitment(&seed).unwrap();
        let lh = list_hash(&list);
        let p = Published { commitment: &c, seed: &seed, list_hash: &lh };
        assert_eq!(verify(&p, &a), Ok(()));

        // Tampering with the order, the list or the seed is caught.
        let mut swapped = a.clone();
        swapped.swap(3, 7);
        assert!(verify(&p, &swapped).unwrap_err().contains("place 4"));
        let mut other = a.clone();
        other[10] = "intruder".into();
        assert!(verify(&p, &other).unwrap_err().contains("listHash"));
        let other_seed = new_seed();
        let forged = Published { seed: &other_seed, ..p.clone() };
        assert!(verify(&forged, &a).unwrap_err().contains("commitment"));
    }

    /// Who lands first among five fans, over 5,000 seeds: uniform (chi-square, 4 degrees of
    /// freedom, below 18.47, p = 0.001); a shuffle biased towards the first-named fan fails it.
    #[test]
    fn the_first_place_is_uniform_over_seeds() {
        let list = users(5);
        let rounds = 5_000;
        let chi_square = |firsts: &[usize]| -> f64 {
            let expected = rounds as f64 / firsts.len() as f64;
            firsts.iter().map(|&o| (o as f64 - expected).powi(2) / expected).sum()
        };
        let mut firsts = [0usize; 5];
        let mut biased = [0usize; 5];
        for _ in 0..rounds {
            let seed = new_seed();
            let o = order(&seed, &list).unwrap();
            firsts[list.iter().position(|u| *u == o[0]).unwrap()] += 1;
            // A plausible bug: the first-named fan wins ties it should not have.
            let b = if o[1] == list[0] { list[0].clone() } else { o[0].clone() };
            biased[list.iter().position(|u| *u == b).unwrap()] += 1;
        }
        assert!(chi_square(&firsts) < 18.47, "first places {firsts:?}: chi-square {}", chi_square(&firsts));
        assert!(chi_square(&biased) > 18.47, "the biased shuffle {biased:?} must fail the test");
    }
}
