//! The status columns hold exactly the text forms of `rekey-model`'s status enums: every value
//! round-trips through the real column on SQLite and PostgreSQL, the schema's own use of a
//! status (the one-running-renewal index) spells it the same, and a value the enum does not know
//! is refused by name when read back.

use rekey_model::{OutboxStatus, RenewalStatus, TimerStatus};
use rekey_store::entity::{outbox, renewal, timer};
use sea_orm::{ActiveValue::Set, EntityTrait};
use uuid::Uuid;

use crate::common::{on_both, tenant};

fn renewal_row(id: Uuid, tenant: Uuid, alias: &str, status: &str) -> renewal::ActiveModel {
    let now = rekey_store::db::now();
    renewal::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant),
        receiver_id: Set(None),
        alias: Set(alias.into()),
        procedure: Set("dual-trust".into()),
        status: Set(status.into()),
        state: Set("{}".into()),
        version: Set(0),
        lease_owner: Set(None),
        lease_until: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
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
            renewal::Entity::insert(renewal_row(id, t, &format!("alias-{i}"), s.as_str()))
                .exec_without_returning(conn)
                .await?;
            let back = renewal::Entity::find_by_id(id)
                .one(conn)
                .await?
                .ok_or("renewal")?;
            assert_eq!(back.status.parse::<RenewalStatus>()?, *s);
        }
        // The schema's partial index names `running` as the enum spells it: a second running
        // renewal of one alias is refused, a finished one is not.
        let running = RenewalStatus::Running.as_str();
        renewal::Entity::insert(renewal_row(Uuid::new_v4(), t, "twice", running))
            .exec_without_returning(conn)
            .await?;
        let again = renewal::Entity::insert(renewal_row(Uuid::new_v4(), t, "twice", running))
            .exec_without_returning(conn)
            .await;
        assert!(again.is_err(), "the one-running-renewal index spells `running` otherwise");
        renewal::Entity::insert(renewal_row(Uuid::new_v4(), t, "twice", RenewalStatus::Completed.as_str()))
            .exec_without_returning(conn)
            .await?;

        // timers.status
        for s in TimerStatus::ALL {
            let id = Uuid::new_v4();
            timer::Entity::insert(timer::ActiveModel {
                id: Set(id),
                tenant_id: Set(t),
                renewal_id: Set(None),
                kind: Set("reminder".into()),
                due_at: Set(now),
                status: Set(s.as_str().into()),
                state: Set("{}".into()),
                attempts: Set(0),
                version: Set(0),
                lease_owner: Set(None),
                lease_until: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .exec_without_returning(conn)
            .await?;
            let back = timer::Entity::find_by_id(id)
                .one(conn)
                .await?
                .ok_or("timer")?;
            assert_eq!(back.status.parse::<TimerStatus>()?, *s);
        }

        // outbox.status
        for s in OutboxStatus::ALL {
            let id = Uuid::new_v4();
            outbox::Entity::insert(outbox::ActiveModel {
                id: Set(id),
                tenant_id: Set(t),
                renewal_id: Set(None),
                message_id: Set(format!("<{id}@rekey>")),
                recipients: Set("a@example.com".into()),
                subject: Set("s".into()),
                state: Set("{}".into()),
                status: Set(s.as_str().into()),
                attempts: Set(0),
                next_attempt_at: Set(now),
                last_error: Set(None),
                version: Set(0),
                lease_owner: Set(None),
                lease_until: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
                sent_at: Set(None),
            })
            .exec_without_returning(conn)
            .await?;
            let back = outbox::Entity::find_by_id(id)
                .one(conn)
                .await?
                .ok_or("outbox")?;
            assert_eq!(back.status.parse::<OutboxStatus>()?, *s);
        }

        // A value written by something else (an older or newer binary, a hand edit) is refused
        // when read, naming the column's vocabulary.
        let id = Uuid::new_v4();
        renewal::Entity::insert(renewal_row(id, t, "odd", "paused"))
            .exec_without_returning(conn)
            .await?;
        let back = renewal::Entity::find_by_id(id)
            .one(conn)
            .await?
            .ok_or("renewal")?;
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
