//! The emergency stop in bounded slices (DESIGN.md, "At stadium scale"): `revoke.lua` refuses
//! every earlier token and session at once in O(1) and sets the live slots aside, and
//! `revoke_slice.lua` ends them at most 1,000 a call. Until issue 35 one call read every session
//! (HGETALL) and every slot (ZRANGE 0 -1) of the concert: up to `maxActive` (a million) of each.

use std::collections::HashSet;

use queuegate::ids::ConcertId;
use queuegate::store::keys::Part;
use queuegate::store::sessions::{ExchangeRequest, Refused, REVOKE_SLICE};

use crate::helpers::Names;
use crate::stadium::{admit_all, admit_request, fan, outbox_fans, queue};

const SESSIONS: usize = 3_000;
const TOKENS: usize = 2_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_refuses_everything_at_once_and_ends_5500_slots_in_slices_of_at_most_1000_even_when_its_caller_dies(
) {
    let names = Names::new();
    let store = names.store();
    let id = "revoke";
    let c = ConcertId::parse(id).unwrap();
    let total = SESSIONS + TOKENS;
    queue(&store, &c, 0, total).await;
    let (admitted, iat_ms) = admit_all(&store, &c, total).await;
    let mut sids = HashSet::new();
    for (i, (user, exp)) in admitted.iter().take(SESSIONS).enumerate() {
        let sid = format!("r{i:05x}");
        let req = ExchangeRequest {
            user,
            jti: &format!("j{i}"),
            iat_ms,
            exp_ms: *exp,
            idle_ms: 600_000,
            max_ms: 3_600_000,
            sid: &sid,
        };
        assert!(store.exchange(&c, req).await.unwrap().is_ok(), "exchange of {user}");
        sids.insert(sid);
    }
    let active = names.key(id, Part::Active);
    let held: usize = names.redis(redis::cmd("ZCARD").arg(&active)).await;
    assert_eq!(held, total, "every admitted fan holds a slot");

    // The operator's listing reads the 3,000 sessions in HSCAN pages: each once, oldest first.
    let (n, head) = store.sessions(&c, 0, 5).await.unwrap();
    let (_, tail) = store.sessions(&c, SESSIONS - 5, 100).await.unwrap();
    assert_eq!((n, head.len(), tail.len()), (SESSIONS, 5, 5), "total and pages of the listing");
    let (_, every) = store.sessions(&c, 0, SESSIONS).await.unwrap();
    assert_eq!(every.iter().map(|s| s.sid.clone()).collect::<HashSet<_>>(), sids, "each session listed once");
    assert!(every.windows(2).all(|w| w[0].started_ms <= w[1].started_ms), "oldest first");

    // The first step: O(1), every slot free at once, everything issued before refused.
    assert!(store.revoke_start(&c).await.unwrap(), "nothing was set aside before");
    let (left, live): (usize, u64) =
        (names.redis(redis::cmd("ZCARD").arg(&active)).await, store.session_count(&c).await.unwrap());
    assert_eq!((left, live), (0, 0), "the slots are free and no session is live right after the first step");
    let (user, exp) = &admitted[SESSIONS];
    let late =
        ExchangeRequest { user, jti: "late", iat_ms, exp_ms: *exp, idle_ms: 600_000, max_ms: 3_600_000, sid: "x" };
    assert_eq!(store.exchange(&c, late).await.unwrap(), Err(Refused::Revoked), "a token issued before is refused");

    // One slice, then the caller dies: a later revocation finishes the set-aside slots first.
    let first = store.revoke_slice(&c).await.unwrap();
    assert!(first.more, "5,500 slots do not fit one slice");
    assert_eq!(first.sessions + first.tokens, REVOKE_SLICE, "a slice ends exactly its bound while more are set aside");
    assert!(!store.revoke_start(&c).await.unwrap(), "an earlier revocation is still being ended");
    let mut slices = vec![first];
    loop {
        let s = store.revoke_slice(&c).await.unwrap();
        assert!(
            s.sessions + s.tokens <= REVOKE_SLICE,
            "a slice ended {} slots, over {REVOKE_SLICE}",
            s.sessions + s.tokens
        );
        slices.push(s);
        if !s.more {
            break;
        }
        assert!(slices.len() <= 10, "more than 10 slices for {total} slots");
    }
    let sessions: u64 = slices.iter().map(|s| s.sessions).sum();
    let tokens: u64 = slices.iter().map(|s| s.tokens).sum();
    assert_eq!((sessions, tokens), (SESSIONS as u64, TOKENS as u64), "slices: {slices:?}");
    assert_eq!(slices.len(), total.div_ceil(REVOKE_SLICE as usize), "slices: {slices:?}");
    for part in [Part::Revoking, Part::RevokingSessions] {
        let exists: i64 = names.redis(redis::cmd("EXISTS").arg(names.key(id, part))).await;
        assert_eq!(exists, 0, "{part:?} is gone once every slot is ended");
    }

    // What was ended is known to the gateways and recorded once each.
    let ended: Vec<String> = names.redis(redis::cmd("ZRANGE").arg(names.key(id, Part::Ended)).arg(0).arg(-1)).await;
    assert_eq!(ended.into_iter().collect::<HashSet<_>>(), sids, "every session's sid is in `ended`");
    let ended_events = outbox_fans(&names, id, "session.ended").await;
    assert_eq!(ended_events.len(), SESSIONS, "one session.ended per session");
    assert!(ended_events.iter().all(|(_, why)| why == "revoked"), "every session ended as revoked");
    let expired = outbox_fans(&names, id, "expired").await;
    let expired: HashSet<String> = expired.into_iter().map(|(u, _)| u).collect();
    let tokens: HashSet<String> = admitted[SESSIONS..].iter().map(|(u, _)| u.as_str().to_owned()).collect();
    assert_eq!(expired, tokens, "every unexchanged token revoked, once");

    // The whole call (as the admin endpoint makes it) on a fresh revocation, and admission
    // goes on into the freed slots.
    queue(&store, &c, total, total + 10).await;
    let got = store.admit(&c, admit_request(1000, 10)).await.unwrap().expect("no lease involved");
    let got: Vec<String> = got.fans.iter().map(|(u, _)| u.as_str().to_owned()).collect();
    assert_eq!(got, (total..total + 10).map(|i| fan(i).as_str().to_owned()).collect::<Vec<_>>(), "freed slots admit");
    assert_eq!(store.revoke_sessions(&c).await.unwrap(), (0, 10), "the ten new tokens revoked");
}
