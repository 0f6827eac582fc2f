//! Unit tests of [`super`] (rules.rs), kept beside it in their own file.

use super::*;

#[test]
fn deadlines_default_per_urgency_and_can_be_overridden() {
    let rules = RuleSet::default_rules().unwrap();
    assert_eq!(rules.deadlines("CRITICAL").acknowledge.num_hours(), 1);
    assert_eq!(rules.deadlines("LOW").decide.num_hours(), 168);
    // The stored form (a referral's urgency column) reads the same.
    assert_eq!(
        rules.deadlines("URGENCY_CRITICAL"),
        rules.deadlines("CRITICAL")
    );
    assert_eq!(rules.fallback().route_within("URGENCY_HIGH").num_hours(), 4);
    assert_eq!(rules.fallback().route_within("LOW").num_hours(), 72);
    let custom = RuleSet::parse(
        "version = \"t\"\n[deadlines]\nHIGH = { acknowledge_hours = 2, decide_hours = 6 }\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(custom.deadlines("HIGH"), Deadlines::hours(2, 6));
    assert_eq!(custom.deadlines("NORMAL"), Deadlines::hours(24, 72));
    for bad in [
        "URGENT = { acknowledge_hours = 2, decide_hours = 6 }",
        "HIGH = { acknowledge_hours = 0, decide_hours = 6 }",
        "HIGH = { acknowledge_hours = 8, decide_hours = 6 }",
        "HIGH = { acknowledge_hours = 2 }",
    ] {
        let text = format!("version = \"t\"\n[deadlines]\n{bad}\n");
        let err = RuleSet::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("t.toml"), "{bad}: {err}");
    }
}

fn facts() -> RoutingFacts {
    RoutingFacts {
        nationality: Some("KE".into()),
        classification: "SUSPECTED_TIP".into(),
        county: "Nairobi".into(),
        urgency: "HIGH".into(),
        filing_agency_kind: "POLICE".into(),
        ..Default::default()
    }
}

fn kinds(h: &[PlannedHandoff]) -> Vec<&'static str> {
    h.iter()
        .map(|h| refnet_core::auth::agency_kind_name(h.to))
        .collect()
}

#[test]
fn each_default_rule_fires_on_its_facts() {
    let rules = RuleSet::default_rules().unwrap();
    assert!(
        rules.route(&facts()).is_empty(),
        "a Kenyan adult filed by police with no needs goes nowhere"
    );
    let child = RoutingFacts {
        child: true,
        needs: vec!["FAMILY_TRACING".into()],
        ..facts()
    };
    let h = rules.route(&child);
    assert_eq!(kinds(&h), vec!["CHILDREN"]);
    assert_eq!(h[0].rule_id, "child-gatekeeping");
    assert_eq!(h[0].purpose, "family tracing and reintegration");
    assert_eq!(
        kinds(&rules.route(&RoutingFacts {
            nationality: Some("UG".into()),
            ..facts()
        })),
        vec!["IMMIGRATION"]
    );
    assert_eq!(
        kinds(&rules.route(&RoutingFacts {
            purposes: vec!["FORCED_LABOUR".into()],
            ..facts()
        })),
        vec!["LABOUR"]
    );
    let employer = rules.route(&RoutingFacts {
        employer_involved: true,
        ..facts()
    });
    assert_eq!(
        (kinds(&employer), employer[0].rule_id.as_str()),
        (vec!["LABOUR"], "employer-involved-labour")
    );
    assert_eq!(
        kinds(&rules.route(&RoutingFacts {
            filing_agency_kind: "NGO".into(),
            ..facts()
        })),
        vec!["POLICE"]
    );
    assert!(
        rules
            .route(&RoutingFacts {
                classification: "SUSPECTED_SMUGGLING".into(),
                filing_agency_kind: "NGO".into(),
                ..facts()
            })
            .is_empty()
    );
    assert_eq!(
        kinds(&rules.route(&RoutingFacts {
            needs: vec!["LEGAL_AID".into()],
            ..facts()
        })),
        vec!["NGO"]
    );
    let tf = rules.route(&RoutingFacts {
        needs: vec!["RETURN".into()],
        ..facts()
    });
    assert_eq!(kinds(&tf), vec!["TRUST_FUND"]);
    assert_eq!(tf[0].checklist.len(), 4);
    assert_eq!(
        kinds(&rules.route(&RoutingFacts {
            needs: vec!["MEDICAL".into()],
            ..facts()
        })),
        vec!["HEALTH"]
    );
}

#[test]
fn the_done_when_scenario_routes_to_four_kinds() {
    let rules = RuleSet::default_rules().unwrap();
    let f = RoutingFacts {
        child: true,
        nationality: Some("UG".into()),
        purposes: vec!["FORCED_LABOUR".into()],
        needs: vec!["SHELTER".into()],
        ..facts()
    };
    assert_eq!(
        kinds(&rules.route(&f)),
        vec!["CHILDREN", "IMMIGRATION", "LABOUR", "NGO"]
    );
    let explained = rules.explain(&f);
    assert_eq!(explained.len(), 8);
    assert!(
        explained
            .iter()
            .any(|(id, r)| id == "employer-involved-labour" && r.is_err())
    );
}

#[test]
fn bad_files_name_the_file_and_entry() {
    for (text, needle) in [
        (
            DEFAULT_RULES.replace("to = \"HEALTH\"", "to = \"HOSPITAL\""),
            "rule #8 (\"medical-health\").to",
        ),
        (
            DEFAULT_RULES.replace("needs = [\"MEDICAL\"]", "needs = [\"MEDICINE\"]"),
            "rule #8 (\"medical-health\").needs",
        ),
        (
            DEFAULT_RULES.replace("id = \"medical-health\"", "id = \"child-gatekeeping\""),
            "duplicate id",
        ),
        (
            DEFAULT_RULES.replace("nationality = \"foreign\"", "nationality = \"alien\""),
            "nationality",
        ),
        (
            DEFAULT_RULES.replace(
                "purpose = \"medical treatment\"",
                "purpose = \"medical treatment\"\ncolour = 1",
            ),
            "colour",
        ),
    ] {
        let e = RuleSet::parse(&text, "rules.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("rules.toml: ") && e.contains(needle),
            "{needle} in {e}"
        );
    }
}
