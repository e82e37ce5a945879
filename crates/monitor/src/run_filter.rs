//! Choosing runs by what they are: the keys a run is known by (the columns
//! of `trainui runs` and the dotted keys of its config.json), the filters
//! of `--where` (`train.learning_rate<1e-3`, `state=training`,
//! `name=lr-*`) and the order of `--sort`. `runs` and `watch` choose their
//! runs with the same code; anything that can give a key's value
//! ([`Fields`]) can be filtered and sorted.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// How a `--where` filter is written, for messages.
pub const FILTER_HELP: &str = "a filter is KEY OP VALUE with OP one of = != < <= > >=, e.g. \
     --where 'train.learning_rate<1e-3' --where state=training --where 'name=lr-*'";

/// The columns of `trainui runs` (and the fields of its JSON) a filter or
/// a sort can name: one table, their names and the other names they go
/// by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Name,
    State,
    Alive,
    Gone,
    Step,
    MaxSteps,
    Loss,
    ValLoss,
    ExactMatch,
    TimeoutRate,
    TokensPerSec,
    Updated,
    Path,
    Framework,
    Device,
    WorldSize,
}

impl Column {
    /// Every column, each with its name first and then its other names.
    pub const ALL: [(Self, &'static [&'static str]); 16] = [
        (Self::Name, &["name", "run"]),
        (Self::State, &["state"]),
        (Self::Alive, &["alive"]),
        (Self::Gone, &["gone"]),
        (Self::Step, &["step"]),
        (Self::MaxSteps, &["max_steps"]),
        (Self::Loss, &["loss"]),
        (Self::ValLoss, &["val_loss"]),
        (Self::ExactMatch, &["exact_match"]),
        (Self::TimeoutRate, &["timeout_rate", "timeouts"]),
        (Self::TokensPerSec, &["tokens_per_sec"]),
        (Self::Updated, &["updated", "updated_secs_ago"]),
        (Self::Path, &["path"]),
        (Self::Framework, &["framework"]),
        (Self::Device, &["device"]),
        (Self::WorldSize, &["world_size"]),
    ];

    /// The producer details: who wrote the run, on what, with how many
    /// processes. `runs` and `diff` show them beside the config keys where
    /// they differ.
    pub const DETAILS: [Self; 3] = [Self::Framework, Self::Device, Self::WorldSize];

    /// Its name, as filters, sorts and headers write it.
    #[must_use]
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(column, _)| *column == self)
            .map(|(_, names)| names[0])
            .expect("every column is in the table")
    }

    /// The column `word` names, if any.
    #[must_use]
    pub fn named(word: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, names)| names.contains(&word))
            .map(|(column, _)| *column)
    }
}

/// What a filter or a sort looks at: a column, or a key of the run's
/// config.json (its dotted path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Column(Column),
    /// The dotted path into config.json, as it is there (`train.learning_rate`).
    Config(String),
}

/// Config keys whose first part is also a column's name (or `config`) are
/// written `config.KEY`, so that every name means one thing.
const CONFIG_PREFIX: &str = "config.";

impl Key {
    /// The key a word names: a column by its name, `config.PATH` always a
    /// config key, any other word a config key.
    #[must_use]
    pub fn parse(word: &str) -> Self {
        if let Some(path) = word.strip_prefix(CONFIG_PREFIX) {
            return Self::Config(path.to_owned());
        }
        Column::named(word).map_or_else(|| Self::Config(word.to_owned()), Self::Column)
    }

    /// Its name as headers and `diff` show it, which [`Key::parse`] reads
    /// back as the same key.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::Column(column) => column.name().to_owned(),
            Self::Config(path) => config_key_name(path),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The name a config key goes by: its dotted path, or `config.PATH` when
/// its first part would name a column (`config.device` is the config's
/// `device`; `device` the one the run resolved).
#[must_use]
pub fn config_key_name(path: &str) -> String {
    let first = path.split('.').next().unwrap_or(path);
    if first == "config" || Column::named(first).is_some() {
        format!("{CONFIG_PREFIX}{path}")
    } else {
        path.to_owned()
    }
}

/// A config file's keys, by dotted path: nested objects are walked, and
/// anything else (numbers, text, lists, null, an empty object) is a value.
#[must_use]
pub fn flatten_config(config: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, value) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, value, out);
                }
            }
            value => {
                out.insert(prefix.to_owned(), value.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Value::Object(_) = config {
        walk("", config, &mut out);
    }
    out
}

/// Something that has a value for each key it knows: a run.
pub trait Fields {
    /// The value of `key`, `None` when this run has none.
    fn field(&self, key: &Key) -> Option<Value>;
}

/// A comparison of a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Self::Eq => ordering == Ordering::Equal,
            Self::Ne => ordering != Ordering::Equal,
            Self::Lt => ordering == Ordering::Less,
            Self::Le => ordering != Ordering::Greater,
            Self::Gt => ordering == Ordering::Greater,
            Self::Ge => ordering != Ordering::Less,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// One `--where KEY OP VALUE`: numbers compare as numbers, text as text
/// (`=` and `!=` with `*` or `?` in the value match it as a pattern); a
/// run without the key fails it, except for `!=`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub key: Key,
    pub op: Op,
    pub value: String,
    /// The value as a number, when it is one.
    number: Option<f64>,
}

impl FromStr for Filter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| format!("{text:?}: {why}; {FILTER_HELP}");
        let Some(at) = text.find(['=', '!', '<', '>']) else {
            return Err(bad("no comparison"));
        };
        let key = text[..at].trim();
        let rest = &text[at..];
        let (op, width) = match rest.get(..2) {
            Some("!=") => (Op::Ne, 2),
            Some("<=") => (Op::Le, 2),
            Some(">=") => (Op::Ge, 2),
            Some("==") => (Op::Eq, 2),
            _ => match rest.as_bytes()[0] {
                b'=' => (Op::Eq, 1),
                b'<' => (Op::Lt, 1),
                b'>' => (Op::Gt, 1),
                _ => return Err(bad("`!` stands only in `!=`")),
            },
        };
        let value = rest[width..].trim();
        if key.is_empty() {
            return Err(bad("no key before the comparison"));
        }
        if key.chars().any(char::is_whitespace) {
            return Err(bad("a key has no spaces"));
        }
        if value.is_empty() {
            return Err(bad("no value after the comparison"));
        }
        if value.starts_with(['=', '!', '<', '>']) {
            return Err(bad("one comparison only"));
        }
        let number = value.parse::<f64>().ok().filter(|n| n.is_finite());
        Ok(Self {
            key: Key::parse(key),
            op,
            value: value.to_owned(),
            number,
        })
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.key, self.op.as_str(), self.value)
    }
}

impl Filter {
    /// Whether `run` passes.
    pub fn holds(&self, run: &impl Fields) -> bool {
        let Some(actual) = run.field(&self.key) else {
            return self.op == Op::Ne;
        };
        if let Value::Number(number) = &actual {
            let Some(want) = self.number else {
                // A number is never equal to, nor ordered with, a word.
                return self.op == Op::Ne;
            };
            return number
                .as_f64()
                .and_then(|n| n.partial_cmp(&want))
                .is_some_and(|ordering| self.op.holds(ordering));
        }
        let text = text_of(&actual);
        match self.op {
            Op::Eq | Op::Ne if self.value.contains(['*', '?']) => {
                (self.op == Op::Eq) == glob(&self.value, &text)
            }
            op => op.holds(text.as_str().cmp(self.value.as_str())),
        }
    }
}

/// The runs of `runs` that pass every filter, in their order.
#[must_use]
pub fn select<T: Fields>(runs: Vec<T>, filters: &[Filter]) -> Vec<T> {
    runs.into_iter()
        .filter(|run| filters.iter().all(|filter| filter.holds(run)))
        .collect()
}

/// `--sort KEY`, `-KEY` for descending.
#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    pub key: Key,
    pub descending: bool,
}

impl FromStr for Sort {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (descending, word) = match text.trim().strip_prefix('-') {
            Some(word) => (true, word),
            None => (false, text.trim()),
        };
        if word.is_empty() || word.chars().any(char::is_whitespace) || word.starts_with('-') {
            return Err(format!(
                "{text:?}: give one column (name, state, step, loss, ...) or config key, \
                 -KEY for descending, e.g. --sort train.learning_rate or --sort=-loss"
            ));
        }
        Ok(Self {
            key: Key::parse(word),
            descending,
        })
    }
}

/// Sorts `runs` by `key` (stable: runs of one value keep their order),
/// ascending or not; runs without the key come last either way.
pub fn sort_by<T: Fields>(runs: &mut [T], key: &Key, descending: bool) {
    runs.sort_by_cached_key(|run| SortValue(run.field(key), descending));
}

/// A value in a sort: numbers before text, runs without one last.
#[derive(PartialEq)]
struct SortValue(Option<Value>, bool);

impl Eq for SortValue {}

impl PartialOrd for SortValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortValue {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.0, &other.0) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => {
                let ordering = compare(a, b);
                if self.1 { ordering.reverse() } else { ordering }
            }
        }
    }
}

/// The order of two values: numbers by size, before anything else, which
/// goes by its text.
#[must_use]
pub fn compare(a: &Value, b: &Value) -> Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => text_of(a).cmp(&text_of(b)),
    }
}

/// Whether two values are the same setting: numbers by value (`1` and
/// `1.0` are one), anything else as it is.
#[must_use]
pub fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        // One number written two ways (`1`, `1.0`) is one value.
        #[allow(clippy::float_cmp)]
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A value as a filter reads it and a table shows it (before escaping):
/// text as it is, anything else as compact JSON.
#[must_use]
pub fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        value => value.to_string(),
    }
}

/// Whether `text` matches the shell pattern `pattern` (`*` any run of
/// characters, `?` one character).
#[must_use]
pub fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the latest `*` was, and the text position it stands up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A run as a map of key names to values.
    struct Run(BTreeMap<String, Value>);

    impl Fields for Run {
        fn field(&self, key: &Key) -> Option<Value> {
            self.0.get(&key.name()).cloned()
        }
    }

    fn run(values: &Value) -> Run {
        Run(flatten_config(values)
            .into_iter()
            .map(|(path, value)| {
                let key = Key::parse(&path);
                (key.name(), value)
            })
            .collect())
    }

    fn holds(filter: &str, values: &Value) -> bool {
        filter.parse::<Filter>().unwrap().holds(&run(values))
    }

    #[test]
    fn numbers_compare_as_numbers_text_as_text_and_a_missing_key_only_passes_not_equal() {
        let lr = json!({"train": {"learning_rate": 0.0003}, "name": "lr-3e-4", "seed": 7});
        assert!(holds("train.learning_rate<1e-3", &lr));
        assert!(holds("train.learning_rate <= 0.0003", &lr));
        assert!(holds("train.learning_rate=3e-4", &lr));
        assert!(!holds("train.learning_rate>1e-3", &lr));
        assert!(!holds("train.learning_rate>=0.00031", &lr));
        // 7 is less than 10 as a number (as text it would be more).
        assert!(holds("seed<10", &lr));
        assert!(holds("name<lr-4", &lr));
        assert!(!holds("name>lr-4", &lr));
        assert!(holds("name=lr-*", &lr));
        assert!(holds("name=lr-?e-4", &lr));
        assert!(!holds("name=lr-1*", &lr));
        assert!(holds("name!=lr-1*", &lr));
        // A number and a word are neither equal nor ordered.
        assert!(!holds("seed=seven", &lr));
        assert!(!holds("seed<seven", &lr));
        assert!(holds("seed!=seven", &lr));
        // A run without the key fails every comparison but `!=`.
        for op in ["=", "<", "<=", ">", ">="] {
            assert!(!holds(&format!("train.warmup{op}1"), &lr), "{op}");
        }
        assert!(holds("train.warmup!=1", &lr));
        // Anything else by its JSON text.
        let other = json!({"model": {"init_from": null}, "tensorboard": {"enabled": true}});
        assert!(holds("model.init_from=null", &other));
        assert!(holds("tensorboard.enabled=true", &other));
    }

    #[test]
    fn a_malformed_filter_names_itself_and_shows_one_that_works() {
        for (text, why) in [
            ("learning_rate", "no comparison"),
            ("<3", "no key"),
            ("state=", "no value"),
            ("loss=<3", "one comparison only"),
            ("loss!3", "`!` stands only in `!=`"),
            ("my key=3", "a key has no spaces"),
        ] {
            let err = text.parse::<Filter>().unwrap_err();
            assert!(err.starts_with(&format!("{text:?}: {why}")), "{err}");
            assert!(err.contains("--where 'train.learning_rate<1e-3'"), "{err}");
        }
        let filter: Filter = "  loss >= 2.5 ".parse().unwrap();
        assert_eq!(filter.key, Key::Column(Column::Loss));
        assert_eq!(filter.op, Op::Ge);
        assert_eq!(filter.to_string(), "loss>=2.5");
    }

    #[test]
    fn config_keys_that_would_name_a_column_go_by_config_dot() {
        assert_eq!(Key::parse("device"), Key::Column(Column::Device));
        assert_eq!(Key::parse("config.device"), Key::Config("device".into()));
        assert_eq!(Key::parse("timeouts"), Key::Column(Column::TimeoutRate));
        assert_eq!(Key::parse("train.lr"), Key::Config("train.lr".into()));
        assert_eq!(config_key_name("device"), "config.device");
        assert_eq!(config_key_name("config.x"), "config.config.x");
        assert_eq!(
            config_key_name("train.learning_rate"),
            "train.learning_rate"
        );
        // Every name a header shows reads back as its key.
        for (column, names) in Column::ALL {
            assert_eq!(Key::parse(column.name()), Key::Column(column));
            assert_eq!(column.name(), names[0]);
            for path in [names[0], "config.a"] {
                let key = Key::Config(path.to_owned());
                assert_eq!(Key::parse(&key.name()), key);
            }
        }
    }

    #[test]
    fn a_config_flattens_to_dotted_keys_whose_leaves_are_values() {
        let config = json!({
            "seed": 1, "train": {"learning_rate": 0.001, "schedule": {"warmup": 10}},
            "layers": [1, 2], "extra": {}, "init": null
        });
        let flat = flatten_config(&config);
        let keys: Vec<&str> = flat.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "extra",
                "init",
                "layers",
                "seed",
                "train.learning_rate",
                "train.schedule.warmup"
            ]
        );
        assert_eq!(flat["layers"], json!([1, 2]));
        assert_eq!(flat["extra"], json!({}));
        assert!(flatten_config(&json!([1])).is_empty());
    }

    #[test]
    fn a_sort_is_stable_puts_runs_without_the_key_last_and_numbers_before_text() {
        let runs = || {
            vec![
                run(&json!({"n": "a", "lr": 0.01})),
                run(&json!({"n": "b"})),
                run(&json!({"n": "c", "lr": 0.001})),
                run(&json!({"n": "d", "lr": "high"})),
                run(&json!({"n": "e", "lr": 0.01})),
            ]
        };
        let order = |descending: bool| {
            let mut runs = runs();
            sort_by(&mut runs, &Key::parse("lr"), descending);
            runs.iter()
                .map(|run| text_of(&run.0["n"]))
                .collect::<String>()
        };
        assert_eq!(order(false), "caedb");
        assert_eq!(order(true), "daecb");
        let sort: Sort = "-train.learning_rate".parse().unwrap();
        assert!(sort.descending);
        assert_eq!(sort.key, Key::Config("train.learning_rate".into()));
        assert!("--loss".parse::<Sort>().is_err());
        assert!("".parse::<Sort>().is_err());
    }

    #[test]
    fn patterns_match_as_the_shell_does() {
        for (pattern, text, matches) in [
            ("lr-*", "lr-3e-4", true),
            ("*", "", true),
            ("*e-4", "lr-3e-4", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("?", "é", true),
            ("lr-?", "lr-10", false),
            ("*a", "aab", false),
        ] {
            assert_eq!(glob(pattern, text), matches, "{pattern} {text}");
        }
    }

    #[test]
    fn selection_keeps_the_runs_that_pass_every_filter_in_order() {
        let runs = vec![
            run(&json!({"n": "a", "lr": 0.01, "state": "training"})),
            run(&json!({"n": "b", "lr": 0.001, "state": "finished"})),
            run(&json!({"n": "c", "lr": 0.0001, "state": "training"})),
        ];
        let filters: Vec<Filter> = ["lr<0.02", "state=training"]
            .iter()
            .map(|f| f.parse().unwrap())
            .collect();
        let names: Vec<String> = select(runs, &filters)
            .iter()
            .map(|run| text_of(&run.0["n"]))
            .collect();
        assert_eq!(names, ["a", "c"]);
    }
}
