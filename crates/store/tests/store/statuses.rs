//! The status columns hold exactly the text forms of `rekey-model`'s status enums: every value
//! round-trips through the real column on SQLite and PostgreSQL, the schema's own use of a
//! status (the one-running-renewal index) spells it the same, and a value the enum does not know
//! is refused by name when read back.

use rekey_model::TenantId;
use rekey_model::{OutboxStatus, RenewalStatus, TimerStatus};
use rekey_store::testing::{self, RawOutbox, RawRenewal};
use rekey_store::{outbox, timers};
use uuid::Uuid;

use crate::common::{on_both, tenant};

fn renewal_row(id: Uuid, tenant: Uuid, alias: &str, status: &str) -> RawRenewal {
    let now = rekey_store::db::now();
    RawRenewal {
        id,
        tenant,
        alias: alias.into(),
        procedure: "dual-trust".into(),
        status: status.into(),
        state: "{}".into(),
        version: 0,
        lease_owner: None,
        lease_until: None,
        at: now,
    }
}

#[tokio::test]
async fn every_status_round_trips_through_its_column_and_unknown_values_are_refused() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?.as_uuid();
        let conn = db.store.db();
        let now = rekey_store::db::now();

        // renewals.status
        for (i, s) in RenewalStatus::ALL.iter().enumerate() {
            let id = Uuid::new_v4();
            testing::insert_raw_renewal(conn, &renewal_row(id, t, &format!("alias-{i}"), s.as_str()))
                .await?;
            let back = testing::raw_renewal(conn, id).await?.ok_or("renewal")?;
            assert_eq!(back.status.parse::<RenewalStatus>()?, *s);
        }
        // The schema's partial index names `running` as the enum spells it: a second running
        // renewal of one alias is refused, a finished one is not.
        let running = RenewalStatus::Running.as_str();
        testing::insert_raw_renewal(conn, &renewal_row(Uuid::new_v4(), t, "twice", running)).await?;
        let again =
            testing::insert_raw_renewal(conn, &renewal_row(Uuid::new_v4(), t, "twice", running))
                .await;
        assert!(again.is_err(), "the one-running-renewal index spells `running` otherwise");
        let owner = Uuid::new_v4();
        testing::insert_raw_renewal(
            conn,
            &renewal_row(owner, t, "twice", RenewalStatus::Completed.as_str()),
        )
        .await?;

        // timers.status
        for s in TimerStatus::ALL {
            timers::schedule(
                conn,
                TenantId::from_uuid(t),
                owner,
                None,
                rekey_engine::TimerKind::Reminder,
                now,
                now,
            )
            .await?;
            let id = timers::of_renewal(conn, owner)
                .await?
                .into_iter()
                .find(|x| x.status == TimerStatus::Pending)
                .ok_or("timer")?
                .id;
            testing::set_timer_status(conn, id, s.as_str()).await?;
            let back = timers::of_renewal(conn, owner)
                .await?
                .into_iter()
                .find(|x| x.id == id)
                .ok_or("timer")?;
            assert_eq!(back.status, *s);
            if *s == TimerStatus::Pending {
                testing::set_timer_status(conn, id, TimerStatus::Fired.as_str()).await?;
            }
        }

        // outbox.status
        for s in OutboxStatus::ALL {
            let id = Uuid::new_v4();
            let raw = RawOutbox {
                id,
                tenant: t,
                renewal: None,
                message_id: format!("<{id}@rekey>"),
                recipients: "a@example.com".into(),
                subject: "s".into(),
                state: "{}".into(),
                at: now,
            };
            testing::queue_raw(conn, raw).await?;
            testing::set_outbox_status(conn, id, s.as_str()).await?;
            let back = outbox::get(conn, id).await?.ok_or("outbox")?;
            assert_eq!(back.status, *s);
        }

        // A value written by something else (an older or newer binary, a hand edit) is refused
        // when read, naming the row and the column's vocabulary.
        let last = outbox::list(conn, None, None).await?[0].id;
        testing::set_outbox_status(conn, last, "bounced").await?;
        let err = outbox::get(conn, last).await.map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(format!(
                "corrupt stored data: outbox row {last}: invalid outbox status \"bounced\": expected one of queued, sent, failed"
            ))
        );
        let timer = timers::of_renewal(conn, owner).await?[0].id;
        testing::set_timer_status(conn, timer, "snoozed").await?;
        let err = timers::of_renewal(conn, owner).await.map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(format!(
                "corrupt stored data: timer {timer}: invalid timer status \"snoozed\": expected one of pending, fired, cancelled, stale, failed"
            ))
        );
        let id = Uuid::new_v4();
        testing::insert_raw_renewal(conn, &renewal_row(id, t, "odd", "paused")).await?;
        let back = testing::raw_renewal(conn, id).await?.ok_or("renewal")?;
        let err = back
            .status
            .parse::<RenewalStatus>()
            .map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("invalid renewal status \"paused\": expected one of running, completed, cancelled, rolled_back".into())
        );
        Ok(())
    })
    .await;
}
