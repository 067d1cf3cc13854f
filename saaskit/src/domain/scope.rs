use std::fmt;

/// What a token may do. Every token carries a set of these; every route names the one it needs.
///
/// | scope            | grants                                                          |
/// |------------------|-----------------------------------------------------------------|
/// | `dashboard`      | everything the member's role allows (includes the two below)    |
/// | `dashboard:read` | the dashboard's `GET` endpoints                                 |
/// | `sdk`            | the SDK's endpoints: metered writes, usage, entitlements        |
///
/// Login sessions carry `dashboard`; API keys carry `sdk`; bots carry what their owner gave them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Dashboard,
    DashboardRead,
    Sdk,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Dashboard, Scope::DashboardRead, Scope::Sdk];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Dashboard => "dashboard",
            Scope::DashboardRead => "dashboard:read",
            Scope::Sdk => "sdk",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// The scopes this one grants, itself included.
    fn bits(self) -> u8 {
        match self {
            Scope::Dashboard => 0b111,
            Scope::DashboardRead => 0b010,
            Scope::Sdk => 0b100,
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Dashboard => 0b001,
            Scope::DashboardRead => 0b010,
            Scope::Sdk => 0b100,
        }
    }
}

/// In the API, a scope is its name.
impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Scope::ALL.map(Scope::as_str)))
            .into()
    }
}

impl utoipa::ToSchema for Scope {}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token's scopes, with what each implies.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes {
    /// The scopes as given (what is stored and shown).
    given: u8,
    /// Everything they grant.
    granted: u8,
}

impl Scopes {
    pub fn of(scopes: impl IntoIterator<Item = Scope>) -> Scopes {
        scopes.into_iter().fold(Scopes::default(), |acc, s| Scopes {
            given: acc.given | s.bit(),
            granted: acc.granted | s.bits(),
        })
    }

    /// Reads the stored JSON array; names this version does not know grant nothing.
    pub fn from_stored(json: &str) -> Scopes {
        let names: Vec<String> = serde_json::from_str(json).unwrap_or_default();
        Scopes::of(names.iter().filter_map(|n| Scope::parse(n)))
    }

    pub fn to_stored(self) -> String {
        serde_json::to_string(&self.names()).unwrap_or_else(|_| "[]".to_owned())
    }

    pub fn allows(self, scope: Scope) -> bool {
        self.granted & scope.bit() != 0
    }

    /// Whether every scope in `other` is granted by these: a token can only hand out what it has.
    pub fn covers(self, other: Scopes) -> bool {
        other.granted & !self.granted == 0
    }

    pub fn is_empty(self) -> bool {
        self.given == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |s| self.given & s.bit() != 0)
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_implies_read_and_sdk_but_not_the_reverse() {
        let dashboard = Scopes::of([Scope::Dashboard]);
        assert!(Scope::ALL.into_iter().all(|s| dashboard.allows(s)));
        let read = Scopes::of([Scope::DashboardRead]);
        assert!(read.allows(Scope::DashboardRead));
        assert!(!read.allows(Scope::Dashboard));
        assert!(!read.allows(Scope::Sdk));
        let sdk = Scopes::of([Scope::Sdk]);
        assert!(sdk.allows(Scope::Sdk));
        assert!(!sdk.allows(Scope::DashboardRead));
        assert!(!Scopes::default().allows(Scope::Sdk));
    }

    #[test]
    fn a_token_covers_only_what_it_grants() {
        let dashboard = Scopes::of([Scope::Dashboard]);
        let read = Scopes::of([Scope::DashboardRead]);
        let sdk = Scopes::of([Scope::Sdk]);
        let read_and_sdk = Scopes::of([Scope::DashboardRead, Scope::Sdk]);
        assert!(dashboard.covers(read_and_sdk));
        assert!(dashboard.covers(dashboard));
        assert!(read_and_sdk.covers(sdk));
        assert!(!read_and_sdk.covers(dashboard));
        assert!(!sdk.covers(read));
        assert!(sdk.covers(Scopes::default()));
    }

    #[test]
    fn stored_form_round_trips_and_ignores_unknown_names() {
        let s = Scopes::of([Scope::Sdk, Scope::DashboardRead]);
        assert_eq!(s.to_stored(), r#"["dashboard:read","sdk"]"#);
        assert_eq!(Scopes::from_stored(&s.to_stored()), s);
        assert_eq!(
            Scopes::from_stored(r#"["*","admin","sdk"]"#),
            Scopes::of([Scope::Sdk])
        );
        assert!(Scopes::from_stored("not json").is_empty());
    }
}
