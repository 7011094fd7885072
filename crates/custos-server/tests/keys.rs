//! API keys: issued and revoked through the ledger, rebuilt from it, checked in constant time.

use std::sync::Arc;
use std::time::Duration;

use custos_core::entry::Limits;
use custos_core::note::Signer;
use custos_ledger::{Ledger, LedgerConfig};
use custos_server::keys::{KEY_CREATED, KEY_REVOKED, KeyError, KeyRegistry, Role};
use custos_server::signing::SigningKeys;
use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};
use custos_store::system_clock;

async fn ledger_in(dir: &std::path::Path) -> Ledger<EmbeddedStore> {
    let store = EmbeddedStore::open(dir, EmbeddedConfig::default()).expect("open");
    let config = LedgerConfig {
        origin: "keys.test/log".into(),
        limits: Limits::default(),
        checkpoint_interval: Duration::from_secs(60),
    };
    let signer = Signer::from_seed("keys.test/log", [3u8; 32]).expect("signer");
    Ledger::open(Arc::new(store), signer, config, system_clock())
        .await
        .expect("ledger")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_live_in_the_ledger_and_only_as_hashes() {
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = ledger_in(dir.path()).await;
    let mut reg = KeyRegistry::load(&ledger)
        .expect("empty registry")
        .with_signing(SigningKeys::new([9; 32]));
    let admin = reg
        .issue(
            &ledger,
            "acme",
            &[Role::Admin, Role::Auditor, Role::Admin],
            None,
            false,
            "user:root",
        )
        .await
        .expect("issue");
    assert!(admin.text.starts_with(&format!("ck_{}_", admin.key.id)));
    assert_eq!(
        admin.key.roles,
        vec![Role::Admin, Role::Auditor],
        "sorted, no duplicates"
    );
    let agent = reg
        .issue(
            &ledger,
            "globex",
            &[Role::Agent],
            Some("crm-bot"),
            true,
            "user:root",
        )
        .await
        .expect("issue agent key");
    assert_eq!(agent.key.agent.as_deref(), Some("agent:crm-bot"));
    // Only a signed key gets a signing secret, derived from the server secret and its id.
    assert!(admin.signing_secret.is_none());
    let signing = agent
        .signing_secret
        .clone()
        .expect("signed key has a secret");
    assert_eq!(signing, SigningKeys::new([9; 32]).secret_for(&agent.key.id));
    assert_eq!(reg.signing_secret(&agent.key), Some(signing.clone()));
    let agent_entry =
        serde_json::to_string(&ledger.get(agent.key.created_seq).expect("entry")).expect("json");
    assert!(
        !agent_entry.contains(&signing["cks_".len()..]),
        "no signing secret in the ledger"
    );

    // The key authenticates; anything else gets the same refusal.
    assert_eq!(
        reg.authenticate(&admin.text).expect("valid").id,
        admin.key.id
    );
    let mut wrong = admin.text.clone();
    wrong.pop();
    wrong.push(if admin.text.ends_with('A') { 'B' } else { 'A' });
    for bad in [
        wrong.as_str(),
        "",
        "ck_",
        "ck_0011223344556677_x",
        "Bearer x",
        &agent.text[..20],
    ] {
        assert!(
            matches!(reg.authenticate(bad), Err(KeyError::Unauthenticated)),
            "{bad}"
        );
    }

    // The ledger holds the issue as an entry in the key's tenant, with a hash, never the text.
    let created = ledger.get(admin.key.created_seq).expect("entry");
    assert_eq!(
        (created.event_type.as_str(), created.tenant.as_str()),
        (KEY_CREATED, "acme")
    );
    let raw = serde_json::to_string(&created).expect("json");
    let secret = admin.text.rsplit('_').next().expect("secret");
    assert!(!raw.contains(secret), "the secret is not in the ledger");
    assert_eq!(created.data["key_sha256"].as_str().map(str::len), Some(64));

    // Revocation is an entry too, and takes effect at once.
    let revoked = reg
        .revoke(&ledger, &admin.key.id, "user:root")
        .await
        .expect("revoke");
    assert!(revoked.revoked_seq.is_some());
    assert_eq!(
        ledger
            .get(revoked.revoked_seq.expect("seq"))
            .expect("entry")
            .event_type,
        KEY_REVOKED
    );
    assert!(matches!(
        reg.authenticate(&admin.text),
        Err(KeyError::Unauthenticated)
    ));
    assert!(matches!(
        reg.revoke(&ledger, &admin.key.id, "user:root").await,
        Err(KeyError::BadRequest(_))
    ));
    assert!(matches!(
        reg.revoke(&ledger, "nope", "user:root").await,
        Err(KeyError::NotFound(_))
    ));

    // The registry rebuilt from the ledger alone equals the live one.
    let rebuilt = KeyRegistry::load(&ledger).expect("rebuild");
    assert_eq!(rebuilt.list(None), reg.list(None));
    assert!(matches!(
        rebuilt.authenticate(&admin.text),
        Err(KeyError::Unauthenticated)
    ));
    assert_eq!(
        rebuilt.authenticate(&agent.text).expect("valid").tenant,
        "globex"
    );
    assert_eq!(rebuilt.list(Some("globex")).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_issue_requests_are_refused_and_record_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = ledger_in(dir.path()).await;
    let mut reg = KeyRegistry::default();
    for (roles, agent) in [
        (vec![], None),
        (vec![Role::Agent], None),
        (vec![Role::Admin], Some("bot")),
        (vec![Role::Agent], Some("has space")),
    ] {
        let r = reg
            .issue(&ledger, "acme", &roles, agent, false, "user:root")
            .await;
        assert!(
            matches!(r, Err(KeyError::BadRequest(_))),
            "{roles:?} {agent:?}"
        );
    }
    // A registry without the server secret cannot issue signed keys.
    assert!(matches!(
        reg.issue(
            &ledger,
            "acme",
            &[Role::Orchestrator],
            None,
            true,
            "user:root"
        )
        .await,
        Err(KeyError::BadRequest(_))
    ));
    assert!(matches!(
        reg.issue(
            &ledger,
            "bad tenant",
            &[Role::Admin],
            None,
            false,
            "user:root"
        )
        .await,
        Err(KeyError::Ledger(_))
    ));
    assert_eq!(ledger.size().expect("size"), 0);
}
