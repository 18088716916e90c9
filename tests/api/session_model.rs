//! Property test: the gate's session accounting (exchange, touch, sweep, complete, end,
//! revoke and admission's `maxActive`) against a model, on the real Redis scripts.
//!
//! Any order of joins, admissions, token exchanges, gate checks, idleness, completions,
//! operators' ends and revocations: the slots in use are exactly the model's (unexchanged
//! tokens plus live sessions), never more than `maxActive`, and admission fills exactly the
//! free slots. Idleness is the one thing not waited for: the fan's deadline in `active` is moved
//! to the past, as the clock would, and the sweep runs (or, as when the deadline passes between
//! a round's sweep and its admission, the admission call alone: it ends the session too).

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use queuegate::ids::{ConcertId, Lane, UserId};
use queuegate::store::keys::Part;
use queuegate::store::sessions::ExchangeRequest;
use queuegate::store::AdmitRequest;

use crate::helpers::Names;

const MAX_ACTIVE: u32 = 3;
const FANS: u8 = 8;

#[derive(Debug, Clone)]
enum Op {
    Join(u8),
    Admit(u32),
    Exchange(u8),
    Touch(u8),
    Idle(u8),
    Complete(u8),
    End(u8),
    Revoke,
    /// The deadline passes just after a round's sweep: the admission call right behind it frees
    /// the slot, and must end the session with it.
    Lapse(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..FANS).prop_map(Op::Join),
        3 => (1u32..4).prop_map(Op::Admit),
        3 => (0..FANS).prop_map(Op::Exchange),
        2 => (0..FANS).prop_map(Op::Touch),
        2 => (0..FANS).prop_map(Op::Idle),
        2 => (0..FANS).prop_map(Op::Lapse),
        1 => (0..FANS).prop_map(Op::Complete),
        1 => (0..FANS).prop_map(Op::End),
        1 => Just(Op::Revoke),
    ]
}

fn fan(u: u8) -> UserId {
    UserId::parse(format!("f{u}")).unwrap()
}

/// An admission token as the store saw it issued.
#[derive(Debug, Clone)]
struct Token {
    iat_ms: i64,
    exp_ms: i64,
    jti: String,
}

#[derive(Default, Debug)]
struct Model {
    joined: HashSet<u8>,
    waiting: Vec<u8>,
    /// Admitted, token not exchanged, slot held.
    tokens: HashMap<u8, Token>,
    /// Live sessions: their ids.
    sessions: HashMap<u8, String>,
    /// Every token ever handed out (a spent or revoked one is refused).
    issued: HashMap<u8, Token>,
    completed: HashSet<u8>,
    spent: HashSet<u8>,
    revoked_at: i64,
}

impl Model {
    fn in_use(&self) -> usize {
        self.tokens.len() + self.sessions.len()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 30, .. ProptestConfig::default() })]

    #[test]
    fn slots_in_use_are_tokens_plus_sessions_and_never_exceed_max_active(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let names = Names::new();
            let store = names.store();
            let c = ConcertId::parse("s").unwrap();
            let active = names.key("s", Part::Active);
            let mut m = Model::default();
            let mut sid_n = 0;
            for op in &ops {
                match *op {
                    Op::Join(u) => {
                        store.apply(&c, &[(&fan(u), 1)]).await.unwrap();
                        store.release(&c, &Lane::general(), 2).await.unwrap();
                        if m.joined.insert(u) {
                            m.waiting.push(u);
                        }
                    }
                    Op::Admit(k) => {
                        let req = AdmitRequest { max_active: MAX_ACTIVE, ..AdmitRequest::manual(k, 600_000) };
                        let got = store.admit(&c, req).await.unwrap().expect("no lease involved");
                        let free = MAX_ACTIVE as usize - m.in_use();
                        let n = (k as usize).min(free).min(m.waiting.len());
                        let want: Vec<u8> = m.waiting.drain(..n).collect();
                        let got_users: Vec<String> = got.fans.iter().map(|(u, _)| u.as_str().to_owned()).collect();
                        let want_users: Vec<String> = want.iter().map(|u| fan(*u).as_str().to_owned()).collect();
                        prop_assert_eq!(got_users, want_users, "admission fills exactly the free slots");
                        for ((u, exp), n) in got.fans.iter().zip(&want) {
                            // Tokens carry whole seconds, as AdmissionKeys::issue writes them.
                            let t = Token { iat_ms: got.iat_ms.div_euclid(1000) * 1000, exp_ms: *exp, jti: format!("jti-{u}") };
                            m.tokens.insert(*n, t.clone());
                            m.issued.insert(*n, t);
                        }
                    }
                    Op::Exchange(u) => {
                        let Some(t) = m.issued.get(&u).cloned() else { continue };
                        sid_n += 1;
                        let sid = format!("{sid_n:04x}");
                        let req = ExchangeRequest { user: &fan(u), jti: &t.jti, iat_ms: t.iat_ms, exp_ms: t.exp_ms, idle_ms: 600_000, max_ms: 3_600_000, sid: &sid };
                        let got = store.exchange(&c, req).await.unwrap();
                        let ok = m.tokens.contains_key(&u) && !m.spent.contains(&u) && t.iat_ms >= m.revoked_at;
                        prop_assert_eq!(got.is_ok(), ok, "exchange of f{}: {:?} in {:?}", u, got, m);
                        if ok {
                            m.tokens.remove(&u);
                            m.spent.insert(u);
                            m.sessions.insert(u, sid);
                        }
                    }
                    Op::Touch(u) => {
                        let sid = m.sessions.get(&u).cloned().unwrap_or_else(|| "ffff".into());
                        let live = store.touch(&c, &fan(u), &sid, 600_000, 0).await.unwrap().is_some();
                        prop_assert_eq!(live, m.sessions.contains_key(&u));
                    }
                    Op::Idle(u) => {
                        // Its deadline passes (a token unexchanged, or a session unused).
                        if m.tokens.contains_key(&u) || m.sessions.contains_key(&u) {
                            names.redis::<()>(redis::cmd("ZADD").arg(&active).arg(1).arg(fan(u).as_str())).await;
                        }
                        let (idle, _) = store.sweep_sessions(&c, 3_660_000).await.unwrap();
                        prop_assert_eq!(idle, u64::from(m.sessions.remove(&u).is_some()));
                        m.tokens.remove(&u);
                    }
                    Op::Lapse(u) => {
                        if m.tokens.contains_key(&u) || m.sessions.contains_key(&u) {
                            names.redis::<()>(redis::cmd("ZADD").arg(&active).arg(1).arg(fan(u).as_str())).await;
                        }
                        let req = AdmitRequest { max_active: MAX_ACTIVE, ..AdmitRequest::manual(0, 600_000) };
                        let got = store.admit(&c, req).await.unwrap().expect("no lease involved");
                        prop_assert!(got.fans.is_empty());
                        prop_assert_eq!(got.sessions_ended, (u64::from(m.sessions.remove(&u).is_some()), 0), "f{}", u);
                        m.tokens.remove(&u);
                    }
                    Op::Complete(u) => {
                        let was_admitted = m.issued.contains_key(&u);
                        let got = store.complete(&c, &fan(u)).await.unwrap();
                        prop_assert_eq!(got.is_some(), was_admitted);
                        if was_admitted && m.completed.insert(u) {
                            m.tokens.remove(&u);
                            prop_assert_eq!(got, Some(m.sessions.remove(&u).is_some()));
                        }
                    }
                    Op::End(u) => {
                        prop_assert_eq!(store.end_session(&c, &fan(u)).await.unwrap(), m.sessions.remove(&u).is_some());
                    }
                    Op::Revoke => {
                        let (sessions, tokens) = store.revoke_sessions(&c).await.unwrap();
                        prop_assert_eq!((sessions as usize, tokens as usize), (m.sessions.len(), m.tokens.len()));
                        m.sessions.clear();
                        m.tokens.clear();
                        let at: i64 = names.redis(redis::cmd("HGET").arg(names.key("s", Part::Gate)).arg("revokedAt")).await;
                        m.revoked_at = at;
                    }
                }
                let in_use: usize = names.redis(redis::cmd("ZCARD").arg(&active)).await;
                prop_assert_eq!(in_use, m.in_use(), "after {:?}: {:?}", op, m);
                prop_assert!(in_use <= MAX_ACTIVE as usize);
                let (live, _) = store.sessions(&c, 0, 100).await.unwrap();
                prop_assert_eq!(live, m.sessions.len());
            }
            Ok(())
        })?;
    }
}

/// The race the model's `Lapse` stands for, step by step: a session's deadline passes after a
/// round's sweep and before its admission call. That call frees the slot, and must end the
/// session with it (counted, and known to every gateway through `ended`); freeing the slot alone
/// left the session counted live for ever, and its slot given to the next fan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passing_between_the_sweep_and_the_admission_ends_the_session() {
    let names = Names::new();
    let store = names.store();
    let c = ConcertId::parse("s").unwrap();
    let active = names.key("s", Part::Active);
    for u in 0..2 {
        store.apply(&c, &[(&fan(u), 1)]).await.unwrap();
    }
    store.release(&c, &Lane::general(), 2).await.unwrap();
    let admit = |max| AdmitRequest { max_active: 1, ..AdmitRequest::manual(max, 600_000) };
    let got = store.admit(&c, admit(5)).await.unwrap().unwrap();
    assert_eq!(got.fans.len(), 1, "one slot");
    let (user, exp) = got.fans[0].clone();
    let iat_ms = got.iat_ms.div_euclid(1000) * 1000;
    let req =
        ExchangeRequest { user: &user, jti: "j0", iat_ms, exp_ms: exp, idle_ms: 600_000, max_ms: 3_600_000, sid: "s0" };
    assert!(store.exchange(&c, req).await.unwrap().is_ok());
    assert_eq!(store.sweep_sessions(&c, 3_660_000).await.unwrap(), (0, 0), "the round's sweep: nothing due yet");
    // Now the deadline passes, and the same round's admission runs.
    names.redis::<()>(redis::cmd("ZADD").arg(&active).arg(1).arg(user.as_str())).await;
    let got = store.admit(&c, admit(5)).await.unwrap().unwrap();
    assert_eq!(got.sessions_ended, (1, 0), "ended as idle, and counted");
    assert_eq!(got.fans.len(), 1, "its slot went to the next fan");
    assert_eq!(store.session_count(&c).await.unwrap(), 0, "no session left counted live");
    let ended: Option<f64> = names.redis(redis::cmd("ZSCORE").arg(names.key("s", Part::Ended)).arg("s0")).await;
    assert!(ended.is_some(), "gateways learn of it from `ended`");
    assert!(store.touch(&c, &user, "s0", 600_000, 0).await.unwrap().is_none(), "a gate check finds it ended");
}
