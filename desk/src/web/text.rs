//! Every string the web desk shows, in one catalogue: English complete,
//! Kiswahili for the navigation and the filing form (others fall back to
//! English). Field labels of the filing form are keyed by the field's path in
//! the contract; a field without an entry shows its name.

/// A language of the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    /// English.
    En,
    /// Kiswahili.
    Sw,
}

impl Lang {
    /// From a `lang` cookie or query value.
    pub(crate) fn parse(value: &str) -> Self {
        if value.eq_ignore_ascii_case("sw") {
            Self::Sw
        } else {
            Self::En
        }
    }

    /// The code in `<html lang>`.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Sw => "sw",
        }
    }
}

/// (key, English, Kiswahili or "" where not translated).
const STRINGS: &[(&str, &str, &str)] = &[
    ("app", "refnet desk", "dawati la refnet"),
    ("nav.inbox", "Inbox", "Kikasha"),
    ("nav.file", "File a referral", "Wasilisha rufaa"),
    ("nav.referrals", "Referrals", "Rufaa"),
    ("nav.sign_out", "Sign out", "Toka"),
    ("nav.language", "Kiswahili", "English"),
    ("sign_in.title", "Sign in", "Ingia"),
    (
        "sign_in.dev",
        "Development sign-in: this server uses refnet's development signing key. Choose a demo agency and roles.",
        "Kuingia kwa majaribio: seva hii inatumia ufunguo wa majaribio wa refnet. Chagua wakala na majukumu.",
    ),
    ("sign_in.agency", "Agency", "Wakala"),
    ("sign_in.roles", "Roles", "Majukumu"),
    ("sign_in.submit", "Sign in", "Ingia"),
    (
        "sign_in.none",
        "Sign-in through your agency's identity provider is not configured on this desk.",
        "Kuingia kupitia mtoa utambulisho wa wakala wako hakujasanidiwa.",
    ),
    ("signed_in_as", "Signed in as", "Umeingia kama"),
    ("inbox.title", "Inbox", "Kikasha"),
    (
        "inbox.empty",
        "Nothing in this inbox.",
        "Hakuna kitu kwenye kikasha hiki.",
    ),
    ("inbox.referral", "Referral", "Rufaa"),
    ("inbox.state", "State", "Hali"),
    ("inbox.due", "Due", "Mwisho"),
    ("inbox.overdue", "overdue", "imechelewa"),
    ("inbox.from", "From", "Kutoka"),
    ("inbox.purpose", "Purpose", "Madhumuni"),
    ("referral.title", "Referral", "Rufaa"),
    ("referral.withheld", "Withheld from you", "Imezuiliwa kwako"),
    ("referral.withheld.path", "Field", "Sehemu"),
    ("referral.withheld.class", "Class", "Aina"),
    ("referral.withheld.reason", "Reason", "Sababu"),
    (
        "referral.none_withheld",
        "Nothing was withheld from you.",
        "Hakuna kilichozuiliwa kwako.",
    ),
    ("inbox.handoff", "Handoff", "Uhamisho"),
    ("referral.timeline", "Timeline", "Mfuatano wa matukio"),
    ("referral.when", "When", "Lini"),
    ("referral.event", "What", "Nini"),
    ("referral.who", "Who", "Nani"),
    ("referral.detail", "Detail", "Maelezo"),
    ("referral.thread", "Messages", "Ujumbe"),
    (
        "referral.no_messages",
        "No messages yet.",
        "Hakuna ujumbe bado.",
    ),
    ("referral.erased", "(erased)", "(imefutwa)"),
    ("referral.post", "Post the message", "Tuma ujumbe"),
    (
        "referral.message",
        "Message to every agency on this referral",
        "Ujumbe kwa kila wakala wa rufaa hii",
    ),
    ("handoff.title", "Handoff", "Uhamisho"),
    ("handoff.to", "To", "Kwa"),
    (
        "handoff.acknowledge_by",
        "Acknowledge by",
        "Thibitisha kabla ya",
    ),
    ("handoff.decide_by", "Decide by", "Amua kabla ya"),
    ("handoff.reason", "Reason", "Sababu"),
    ("handoff.checklist", "Checklist", "Orodha ya ukaguzi"),
    ("handoff.provided", "provided", "imetolewa"),
    ("handoff.mark", "Mark provided", "Weka imetolewa"),
    ("handoff.unmark", "Mark not provided", "Weka haijatolewa"),
    ("handoff.actions", "Actions", "Hatua"),
    ("handoff.acknowledge", "Acknowledge", "Thibitisha kupokea"),
    ("handoff.accept", "Accept", "Kubali"),
    ("handoff.decline", "Decline", "Kataa"),
    ("handoff.complete", "Complete", "Kamilisha"),
    ("handoff.withdraw", "Withdraw", "Ondoa"),
    ("file.title", "File a referral", "Wasilisha rufaa"),
    (
        "file.intro",
        "Every field of a referral draft. Leave out what you do not know; the server says what is missing.",
        "Kila sehemu ya rufaa. Acha usichojua; seva itaeleza kinachokosekana.",
    ),
    ("file.submit", "File the referral", "Wasilisha rufaa"),
    ("file.lines", "one per line", "moja kwa kila mstari"),
    (
        "file.errors",
        "The referral was not filed. Correct the fields marked below.",
        "Rufaa haijawasilishwa. Sahihisha sehemu zilizowekwa alama.",
    ),
    ("file.filed", "Filed", "Imewasilishwa"),
    ("error.title", "Something went wrong", "Hitilafu imetokea"),
    (
        "error.csrf",
        "This form has expired or did not come from this desk. Go back, reload the page and send it again.",
        "Fomu hii imepitwa na wakati au haikutoka kwenye dawati hili. Rudi, pakia upya na utume tena.",
    ),
    (
        "error.signed_out",
        "Your session has ended. Sign in again.",
        "Kipindi chako kimeisha. Ingia tena.",
    ),
    ("withheld", "withheld", "imezuiliwa"),
    // Filing form: sections and the fields a desk officer fills.
    ("draft.subject", "The person", "Mhusika"),
    ("draft.subject.given_name", "Given name", "Jina la kwanza"),
    ("draft.subject.family_name", "Family name", "Jina la ukoo"),
    ("draft.subject.aliases", "Other names", "Majina mengine"),
    (
        "draft.subject.national_id",
        "National ID number",
        "Nambari ya kitambulisho",
    ),
    (
        "draft.subject.passport_number",
        "Passport number",
        "Nambari ya pasipoti",
    ),
    (
        "draft.subject.refugee_id",
        "Refugee ID",
        "Kitambulisho cha mkimbizi",
    ),
    ("draft.subject.phones", "Phone numbers", "Nambari za simu"),
    ("draft.subject.email", "Email", "Barua pepe"),
    (
        "draft.subject.home_address",
        "Home address",
        "Anwani ya nyumbani",
    ),
    (
        "draft.subject.current_location",
        "Where the person is now",
        "Mahali alipo sasa",
    ),
    (
        "draft.subject.shelter_address",
        "Shelter address",
        "Anwani ya makazi",
    ),
    (
        "draft.subject.date_of_birth",
        "Date of birth (YYYY-MM-DD)",
        "Tarehe ya kuzaliwa (MMMM-MM-SS)",
    ),
    ("draft.subject.sex", "Sex", "Jinsia"),
    ("draft.subject.nationality", "Nationality", "Uraia"),
    (
        "draft.subject.county_of_origin",
        "County of origin",
        "Kaunti ya asili",
    ),
    (
        "draft.subject.sub_county_of_origin",
        "Sub-county of origin",
        "Kaunti ndogo ya asili",
    ),
    ("draft.subject.languages", "Languages", "Lugha"),
    (
        "draft.subject.next_of_kin",
        "Next of kin",
        "Jamaa wa karibu",
    ),
    ("draft.subject.coordinates", "Coordinates", "Viwianishi"),
    ("draft.case_facts", "What happened", "Kilichotokea"),
    ("draft.case_facts.acts", "Acts", "Vitendo"),
    ("draft.case_facts.means", "Means", "Njia"),
    (
        "draft.case_facts.purposes",
        "Purposes of exploitation",
        "Madhumuni ya unyonyaji",
    ),
    ("draft.case_facts.narrative", "Narrative", "Maelezo"),
    (
        "draft.special",
        "Health and special needs",
        "Afya na mahitaji maalum",
    ),
    ("draft.suspects", "Suspects", "Washukiwa"),
    ("draft.needs", "Needs", "Mahitaji"),
    ("draft.consent", "Consent", "Ridhaa"),
    ("draft.consent.given", "Consent given", "Ridhaa imetolewa"),
    ("draft.consent.by", "Given by", "Imetolewa na"),
    (
        "draft.consent.agency_kinds",
        "To share with",
        "Kushiriki na",
    ),
    ("draft.urgency", "Urgency", "Uharaka"),
    ("draft.classification", "Classification", "Uainishaji"),
    ("draft.identified_by", "Identified by", "Ametambuliwa na"),
    (
        "draft.county",
        "County handling the case",
        "Kaunti inayoshughulikia",
    ),
];

/// The string `key` in `lang` (English where there is no translation; the
/// key itself when the catalogue has no entry, which a test forbids for the
/// keys the pages use).
pub(crate) fn t(lang: Lang, key: &str) -> &'static str {
    match STRINGS.iter().find(|(k, _, _)| *k == key) {
        Some((_, en, sw)) => match lang {
            Lang::Sw if !sw.is_empty() => sw,
            _ => en,
        },
        None => "",
    }
}

/// A form field's label: the catalogue's, else its name in words.
pub(crate) fn label(lang: Lang, path: &str, name: &str) -> String {
    match t(lang, path) {
        "" => {
            let mut words = name.replace('_', " ");
            if let Some(first) = words.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            words
        }
        found => found.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn navigation_and_the_filing_form_are_in_both_languages() {
        for (key, en, sw) in STRINGS {
            assert!(!en.is_empty(), "{key} has no English");
            if key.starts_with("nav.") || key.starts_with("file.") || key.starts_with("draft.") {
                assert!(!sw.is_empty(), "{key} has no Kiswahili");
            }
        }
        assert_eq!(t(Lang::Sw, "nav.inbox"), "Kikasha");
        assert_eq!(t(Lang::En, "nav.inbox"), "Inbox");
        assert_eq!(label(Lang::En, "draft.nothing", "sub_county"), "Sub county");
    }
}
