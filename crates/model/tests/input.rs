//! The parsers of the vocabulary: what each accepts and how it names what it refuses.

use rekey_model::{
    Alias, Email, FlowName, InvalidInput, OutboxStatus, RenewalStatus, Role, StepName, TenantId,
    TimerStatus,
};

#[test]
fn alias_rules() {
    assert!(Alias::parse("signer-2026.a_b").is_ok());
    assert!(Alias::parse(&"a".repeat(64)).is_ok());
    assert!(Alias::parse(&"a".repeat(65)).is_err());
    assert!(Alias::parse("").is_err());
    let err = Alias::parse("has space").err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "invalid alias \"has space\": character ' ' is not allowed: use A-Z, a-z, 0-9, '.', '_' or '-'"
        )
    );
    assert!(Alias::parse("ümlaut").is_err());
    assert!(Alias::parse("a/b").is_err());
}

#[test]
fn email_rules() {
    assert_eq!(
        Email::parse(" Alice@Example.COM ").ok().map(String::from),
        Some("alice@example.com".to_string())
    );
    for bad in [
        "",
        "alice",
        "alice@",
        "@example.com",
        "alice@localhost",
        "Alice <alice@example.com>",
        "alice@[127.0.0.1]",
        "a b@example.com",
        "alice@@example.com",
    ] {
        let err = Email::parse(bad);
        assert!(err.is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn names_refuse_blank_and_control() {
    assert!(FlowName::parse("Orders to ACME").is_ok());
    assert!(FlowName::parse(" padded").is_err());
    assert!(FlowName::parse("").is_err());
    assert!(StepName::parse("a\nb").is_err());
}

#[test]
fn ids_round_trip() {
    let id = TenantId::random();
    assert_eq!(id.to_string().parse::<TenantId>().ok(), Some(id));
    assert!("not-a-uuid".parse::<TenantId>().is_err());
}

#[test]
fn roles_round_trip() {
    for r in [
        Role::TenantAdmin,
        Role::IntegrationDeveloper,
        Role::ReceiverAdmin,
    ] {
        assert_eq!(r.as_str().parse::<Role>().ok(), Some(r));
    }
    assert!("admin".parse::<Role>().is_err());
}

#[test]
fn statuses_round_trip_and_refuse_unknown_values_by_name() {
    for s in RenewalStatus::ALL {
        assert_eq!(s.as_str().parse::<RenewalStatus>().ok(), Some(*s));
        // The JSON state spells the status as the column does.
        assert_eq!(
            serde_json::to_value(s).ok(),
            Some(serde_json::Value::from(s.as_str()))
        );
    }
    for s in TimerStatus::ALL {
        assert_eq!(s.as_str().parse::<TimerStatus>().ok(), Some(*s));
    }
    for s in OutboxStatus::ALL {
        assert_eq!(s.as_str().parse::<OutboxStatus>().ok(), Some(*s));
    }
    let err: Result<RenewalStatus, InvalidInput> = "Running".parse();
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err(
            "invalid renewal status \"Running\": expected one of running, completed, cancelled, rolled_back"
                .to_string()
        )
    );
}

#[test]
fn roles_are_spelled_as_the_procedure_files_and_the_users_table_spell_them() {
    for r in Role::ALL {
        assert_eq!(
            serde_json::to_value(r).ok(),
            Some(serde_json::Value::from(r.as_str()))
        );
    }
}

#[test]
fn procedures_are_spelled_as_the_workflow_files_spell_them_and_others_are_refused() {
    use rekey_model::ProcedureId;
    for p in ProcedureId::ALL {
        assert_eq!(p.as_str().parse::<ProcedureId>().ok(), Some(p));
        assert_eq!(
            serde_json::to_value(p).ok(),
            Some(serde_json::Value::from(p.as_str()))
        );
    }
    assert_eq!(
        "dual_trust".parse::<ProcedureId>().map_err(|e| e.to_string()),
        Err("unknown procedure \"dual_trust\": expected one of dual-trust, dual-signature, prepared-second-alias, downtime-window".to_string())
    );
}
