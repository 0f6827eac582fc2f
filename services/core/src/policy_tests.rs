//! Unit tests of [`super`] (policy.rs), kept beside it in their own file.

use super::*;

fn roles(r: &[Role]) -> BTreeSet<Role> {
    r.iter().copied().collect()
}

fn consented(kinds: &[AgencyKind]) -> SubjectState {
    SubjectState {
        consented_kinds: kinds.to_vec(),
        pseudonym: "Subject-TEST".into(),
        ..Default::default()
    }
}

#[test]
fn default_policy_is_the_table_of_redaction_md() {
    let p = Policy::default_policy().unwrap();
    let officer = roles(&[Role::Officer]);
    let all = consented(&[
        AgencyKind::Ngo,
        AgencyKind::Health,
        AgencyKind::Labour,
        AgencyKind::TrustFund,
    ]);
    let v = p
        .view(AgencyKind::Labour, &officer, &all, &Relation::default())
        .unwrap();
    assert_eq!(v.decide(Sensitivity::Identity).action, Action::Mask);
    assert_eq!(
        v.decide(Sensitivity::QuasiIdentifier).action,
        Action::Generalise
    );
    assert_eq!(v.decide(Sensitivity::Operational).action, Action::Show);
    let v = p
        .view(AgencyKind::Police, &officer, &all, &Relation::default())
        .unwrap();
    assert_eq!(v.decide(Sensitivity::Special).action, Action::Drop);
    assert_eq!(v.decide(Sensitivity::Location).action, Action::Show);
    assert!(p.matrix().contains("IDENTITY"));
}

#[test]
fn overrides_tighten_and_say_why() {
    let p = Policy::default_policy().unwrap();
    let officer = roles(&[Role::Officer]);
    let none = consented(&[]);
    let v = p
        .view(AgencyKind::Labour, &officer, &none, &Relation::default())
        .unwrap();
    assert_eq!(
        v.decide(Sensitivity::Identity),
        Decision {
            action: Action::Pseudonymise,
            reason: RedactionReason::NoConsent
        }
    );
    // Consent does not limit law enforcement.
    let v = p
        .view(AgencyKind::Police, &officer, &none, &Relation::default())
        .unwrap();
    assert_eq!(v.decide(Sensitivity::Identity).action, Action::Show);
    // Protection: everyone but the WPA.
    let protected = SubjectState {
        protected_pseudonym: Some("Witness K-17".into()),
        ..consented(&[])
    };
    let v = p
        .view(
            AgencyKind::Police,
            &officer,
            &protected,
            &Relation::default(),
        )
        .unwrap();
    assert_eq!(
        v.decide(Sensitivity::Identity),
        Decision {
            action: Action::Pseudonymise,
            reason: RedactionReason::Protected
        }
    );
    assert_eq!(v.pseudonym, "Witness K-17");
    assert!(v.coarse_quasi);
    // Protected and without consent (both pseudonymise identity): the
    // stronger override is named.
    let v = p
        .view(
            AgencyKind::Labour,
            &officer,
            &protected,
            &Relation::default(),
        )
        .unwrap();
    assert_eq!(
        v.decide(Sensitivity::Identity),
        Decision {
            action: Action::Pseudonymise,
            reason: RedactionReason::Protected
        }
    );
    let v = p
        .view(AgencyKind::Wpa, &officer, &protected, &Relation::default())
        .unwrap();
    assert_eq!(v.decide(Sensitivity::Identity).action, Action::Show);
    // Auditors: operational only.
    let v = p
        .view(
            AgencyKind::Police,
            &roles(&[Role::Auditor]),
            &none,
            &Relation::default(),
        )
        .unwrap();
    assert_eq!(
        v.decide(Sensitivity::Case),
        Decision {
            action: Action::Drop,
            reason: RedactionReason::Role
        }
    );
    assert_eq!(v.decide(Sensitivity::Operational).action, Action::Show);
    // An officer who is also an auditor gets the officer's view.
    let v = p
        .view(
            AgencyKind::Police,
            &roles(&[Role::Officer, Role::Auditor]),
            &none,
            &Relation::default(),
        )
        .unwrap();
    assert_eq!(v.decide(Sensitivity::Case).action, Action::Show);
}

#[test]
fn ngo_sees_location_only_when_running_the_shelter() {
    let p = Policy::default_policy().unwrap();
    let officer = roles(&[Role::Officer]);
    let s = consented(&[AgencyKind::Ngo]);
    let accepted = Relation {
        handoff: Some(("ACCEPTED".into(), "Shelter and psychosocial support".into())),
    };
    let pending = Relation {
        handoff: Some(("DELIVERED".into(), "shelter".into())),
    };
    assert_eq!(
        p.view(AgencyKind::Ngo, &officer, &s, &accepted)
            .unwrap()
            .decide(Sensitivity::Location)
            .action,
        Action::Show
    );
    assert_eq!(
        p.view(AgencyKind::Ngo, &officer, &s, &pending)
            .unwrap()
            .decide(Sensitivity::Location)
            .action,
        Action::Drop
    );
    // ...and never without consent.
    assert_eq!(
        p.view(AgencyKind::Ngo, &officer, &consented(&[]), &accepted)
            .unwrap()
            .decide(Sensitivity::Location)
            .action,
        Action::Drop
    );
}

#[test]
fn bad_files_name_the_file_and_entry() {
    let cases = [
        (
            DEFAULT_POLICY.replace(
                "[agency.POLICE]\nIDENTITY = \"show\"",
                "[agency.POLICE]\nIDENTITY = \"shw\"",
            ),
            "agency.POLICE.IDENTITY",
        ),
        (
            DEFAULT_POLICY.replace("[agency.HEALTH]", "[agency.HOSPITAL]"),
            "agency.HOSPITAL",
        ),
        (
            DEFAULT_POLICY.replace(
                "SUSPECT = \"drop\"\nPROTECTION = \"drop\"\n\n[agency.HEALTH]",
                "SUSPECTS = \"drop\"\nPROTECTION = \"drop\"\n\n[agency.HEALTH]",
            ),
            "agency.NGO.SUSPECTS",
        ),
        (
            DEFAULT_POLICY.replace("auditor = \"operational\"", "janitor = \"operational\""),
            "roles.janitor",
        ),
        (
            DEFAULT_POLICY.replace(
                "coarse_quasi_identifiers = true",
                "coarse_quasi_identifiers = true\ncolour = \"red\"",
            ),
            "colour",
        ),
        (
            DEFAULT_POLICY.replace(
                "[override.no_consent.actions]\nIDENTITY",
                "[override.no_consent.actions]\nIDENTITEE",
            ),
            "override.no_consent.actions.IDENTITEE",
        ),
        (DEFAULT_POLICY.replace("version = ", "versio = "), "syntax"),
    ];
    for (text, entry) in cases {
        let err = Policy::parse(&text, "custom.toml").unwrap_err().to_string();
        assert!(err.starts_with("custom.toml: "), "{err}");
        assert!(err.contains(entry), "{entry} in {err}");
    }
}

#[test]
fn unknown_roles_are_refused() {
    let p = Policy::default_policy().unwrap();
    let text = DEFAULT_POLICY.replace("auditor = \"operational\"\n", "");
    let without_auditor = Policy::parse(&text, "p.toml").unwrap();
    let auditor = roles(&[Role::Auditor]);
    assert!(
        p.view(
            AgencyKind::Police,
            &auditor,
            &consented(&[]),
            &Relation::default()
        )
        .is_ok()
    );
    assert!(
        without_auditor
            .view(
                AgencyKind::Police,
                &auditor,
                &consented(&[]),
                &Relation::default()
            )
            .is_err()
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn kind() -> impl Strategy<Value = AgencyKind> {
        (1..=10i32).prop_map(|n| AgencyKind::try_from(n).unwrap())
    }

    fn role_set() -> impl Strategy<Value = BTreeSet<Role>> {
        proptest::sample::subsequence(
            vec![
                Role::Officer,
                Role::Supervisor,
                Role::Auditor,
                Role::DataProtection,
            ],
            1..=4,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    fn kinds() -> impl Strategy<Value = Vec<AgencyKind>> {
        proptest::collection::vec(kind(), 0..5)
    }

    proptest! {
        #[test]
        fn overrides_only_tighten_and_protection_always_holds(
            viewer in kind(),
            roles in role_set(),
            consented in kinds(),
            protected in any::<bool>(),
            accepted_shelter in any::<bool>(),
        ) {
            let p = Policy::default_policy().unwrap();
            let subject = SubjectState {
                consented_kinds: consented.clone(),
                protected_pseudonym: protected.then(|| "Witness-1".to_owned()),
                pseudonym: "Subject-X".into(),
            };
            let relation = Relation {
                handoff: accepted_shelter.then(|| ("ACCEPTED".to_owned(), "shelter".to_owned())),
            };
            let view = p.view(viewer, &roles, &subject, &relation).unwrap();
            let base = p.view(viewer, &roles, &SubjectState {
                consented_kinds: (1..=10).filter_map(|n| AgencyKind::try_from(n).ok()).collect(),
                ..Default::default()
            }, &relation).unwrap();
            prop_assert_eq!(view.decide(Sensitivity::Operational).action, Action::Show);
            for class in POLICY_CLASSES {
                prop_assert!(view.decide(class).action >= base.decide(class).action);
            }
            let operational_only = roles
                .iter()
                .all(|r| matches!(r, Role::Auditor | Role::DataProtection));
            if operational_only {
                for class in POLICY_CLASSES {
                    prop_assert_eq!(view.decide(class).action, Action::Drop);
                }
            }
            if protected && viewer != AgencyKind::Wpa {
                prop_assert!(view.decide(Sensitivity::Identity).action >= Action::Pseudonymise);
                prop_assert_eq!(view.decide(Sensitivity::Location).action, Action::Drop);
                prop_assert_eq!(view.decide(Sensitivity::Special).action, Action::Drop);
                prop_assert!(view.decide(Sensitivity::QuasiIdentifier).action >= Action::Generalise);
                prop_assert_eq!(view.pseudonym.as_str(), "Witness-1");
            }
            let bound = matches!(viewer, AgencyKind::Ngo | AgencyKind::Health | AgencyKind::Labour | AgencyKind::TrustFund);
            if bound && !consented.contains(&viewer) {
                prop_assert!(view.decide(Sensitivity::Identity).action >= Action::Pseudonymise);
                prop_assert_eq!(view.decide(Sensitivity::Location).action, Action::Drop);
            }
            if viewer == AgencyKind::Secretariat {
                for class in POLICY_CLASSES {
                    prop_assert_eq!(view.decide(class).action, Action::Drop);
                }
            }
        }
    }
}
