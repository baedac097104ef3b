//! The store's namespace against a model: random sequences of put, mkdir, symlink,
//! remove, rename and reopen on a real store in a temporary directory, each compared with
//! the same operation on an in-memory map of paths. After every operation the outcome
//! (success, or which error) and the whole tree (kinds, file contents, symlink targets)
//! must agree, and a refused operation must leave the tree unchanged.
//!
//! A few cases run in the default test run; `scripts/fuzz` runs the `#[ignore]`d
//! variant at scale. Failures proptest finds are kept in `fuzz_model.proptest-regressions`
//! beside this file and replayed first by every run: commit them.

use std::collections::BTreeMap;

use aurae_core::path::StorePath;
use aurae_store::namespace::{self, Removal};
use aurae_store::{Content, Durability, EntryKind, Parents, PutOptions, Store, StoreConfig};
use aurae_store::{StoreError, check_name};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// What the model holds at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Link(String),
}

/// How an operation ended, as far as the model can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    NotFound,
    NotADirectory,
    IsADirectory,
    IsASymlink,
    Exists,
    NotEmpty,
    InvalidMove,
    NotPermitted,
}

fn outcome_of<T>(result: &Result<T, StoreError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Done,
        Err(StoreError::NotFound(_)) => Outcome::NotFound,
        Err(StoreError::NotADirectory(_)) => Outcome::NotADirectory,
        Err(StoreError::IsADirectory(_)) => Outcome::IsADirectory,
        Err(StoreError::IsASymlink(_)) => Outcome::IsASymlink,
        Err(StoreError::Exists(_)) => Outcome::Exists,
        Err(StoreError::NotEmpty(_)) => Outcome::NotEmpty,
        Err(StoreError::InvalidMove { .. }) => Outcome::InvalidMove,
        Err(StoreError::NotPermitted(_)) => Outcome::NotPermitted,
        Err(other) => panic!("an error the model never expects: {other:?}"),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(String, Vec<u8>, Parents),
    Mkdir(String, Parents),
    Symlink(String, String),
    Remove(String, Removal),
    Rename(String, String),
    /// Close the store and open it again: recovery must give back the same tree.
    Reopen,
}

/// The namespace as a map of normalized paths; `/` is always a directory.
#[derive(Debug, Clone)]
struct Model(BTreeMap<String, Node>);

fn parent_of(path: &str) -> Option<String> {
    let p: StorePath = path.parse().ok()?;
    p.split_last().map(|(parent, _)| parent.to_string())
}

/// The prefixes of `path`, root excluded, shortest first: `/a/b` gives `/a`, `/a/b`.
fn prefixes(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut walked = String::new();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        walked.push('/');
        walked.push_str(c);
        out.push(walked.clone());
    }
    out
}

impl Model {
    fn new() -> Self {
        Self(BTreeMap::from([("/".to_owned(), Node::Dir)]))
    }

    /// Walks `path` without following symlinks, as the store resolves it.
    fn resolve(&self, path: &str) -> Result<&Node, Outcome> {
        let mut node = &self.0["/"];
        for prefix in prefixes(path) {
            if *node != Node::Dir {
                return Err(Outcome::NotADirectory);
            }
            node = self.0.get(&prefix).ok_or(Outcome::NotFound)?;
        }
        Ok(node)
    }

    fn has_children(&self, dir: &str) -> bool {
        self.0.keys().any(|k| parent_of(k).as_deref() == Some(dir))
    }

    fn subtree(&self, path: &str) -> Vec<String> {
        let below = format!("{path}/");
        self.0
            .keys()
            .filter(|k| *k == path || k.starts_with(&below))
            .cloned()
            .collect()
    }

    /// The directory that will hold `path`, made with its parents if asked.
    fn parent_dir(&mut self, path: &str, parents: Parents) -> Result<(), Outcome> {
        let parent = parent_of(path).ok_or(Outcome::Exists)?;
        match self.resolve(&parent) {
            Ok(Node::Dir) => Ok(()),
            Ok(_) => Err(Outcome::NotADirectory),
            Err(Outcome::NotFound) if parents == Parents::Create => {
                self.mkdir(&parent, Parents::Create)
            }
            Err(e) => Err(e),
        }
    }

    fn create(&mut self, path: &str, node: Node) -> Result<(), Outcome> {
        if self.0.contains_key(path) {
            return Err(Outcome::Exists);
        }
        self.0.insert(path.to_owned(), node);
        Ok(())
    }

    fn mkdir(&mut self, path: &str, parents: Parents) -> Result<(), Outcome> {
        if let Ok(node) = self.resolve(path) {
            return match (node, parents) {
                (Node::Dir, Parents::Create) => Ok(()),
                _ => Err(Outcome::Exists),
            };
        }
        self.parent_dir(path, parents)?;
        self.create(path, Node::Dir)
    }

    fn put(&mut self, path: &str, value: &[u8], parents: Parents) -> Result<(), Outcome> {
        match self.resolve(path) {
            Ok(Node::Dir) => Err(Outcome::IsADirectory),
            Ok(Node::Link(_)) => Err(Outcome::IsASymlink),
            Ok(Node::File(_)) => {
                self.0.insert(path.to_owned(), Node::File(value.to_vec()));
                Ok(())
            }
            Err(Outcome::NotFound) => {
                self.parent_dir(path, parents)?;
                self.create(path, Node::File(value.to_vec()))
            }
            Err(e) => Err(e),
        }
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<(), Outcome> {
        self.parent_dir(path, Parents::MustExist)?;
        self.create(path, Node::Link(target.to_owned()))
    }

    fn remove(&mut self, path: &str, removal: Removal) -> Result<(), Outcome> {
        let parent = parent_of(path).ok_or(Outcome::NotPermitted)?;
        if *self.resolve(&parent)? != Node::Dir {
            return Err(Outcome::NotADirectory);
        }
        let node = self.0.get(path).ok_or(Outcome::NotFound)?;
        if *node == Node::Dir && removal == Removal::Single && self.has_children(path) {
            return Err(Outcome::NotEmpty);
        }
        for gone in self.subtree(path) {
            self.0.remove(&gone);
        }
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), Outcome> {
        let (Some(from_parent), Some(to_parent)) = (parent_of(from), parent_of(to)) else {
            return Err(Outcome::InvalidMove);
        };
        let from_parent_node = self.resolve(&from_parent)?.clone();
        if *self.resolve(&to_parent)? != Node::Dir || from_parent_node != Node::Dir {
            return Err(Outcome::NotADirectory);
        }
        let moving = self.0.get(from).ok_or(Outcome::NotFound)?.clone();
        if from == to {
            return Ok(());
        }
        let into_itself = to_parent == from || to_parent.starts_with(&format!("{from}/"));
        if moving == Node::Dir && into_itself {
            return Err(Outcome::InvalidMove);
        }
        if let Some(existing) = self.0.get(to) {
            match (moving == Node::Dir, *existing == Node::Dir) {
                (true, true) if self.has_children(to) => return Err(Outcome::NotEmpty),
                (false, true) => return Err(Outcome::IsADirectory),
                (true, false) => return Err(Outcome::NotADirectory),
                _ => {}
            }
            self.0.remove(to);
        }
        for old in self.subtree(from) {
            let node = self.0.remove(&old).expect("listed");
            self.0.insert(format!("{to}{}", &old[from.len()..]), node);
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        let result = match op {
            Op::Put(path, value, parents) => self.put(path, value, *parents),
            Op::Mkdir(path, parents) => self.mkdir(path, *parents),
            Op::Symlink(path, target) => self.symlink(path, target),
            Op::Remove(path, removal) => self.remove(path, *removal),
            Op::Rename(from, to) => self.rename(from, to),
            Op::Reopen => Ok(()),
        };
        match result {
            Ok(()) => Outcome::Done,
            Err(e) => e,
        }
    }
}

fn p(path: &str) -> StorePath {
    path.parse().expect("generated paths are valid")
}

/// Runs `op` on the store (`Reopen` is the caller's).
async fn run(store: &Store, op: &Op) -> Outcome {
    let durable = Durability::Durable;
    match op.clone() {
        Op::Put(path, value, parents) => {
            let options = PutOptions {
                parents,
                ..Default::default()
            };
            let put = namespace::put(p(&path), Content::from(value), options);
            outcome_of(&store.write(durable, put).await)
        }
        Op::Mkdir(path, parents) => outcome_of(
            &store
                .write(durable, namespace::mkdir(p(&path), 0o755, parents))
                .await,
        ),
        Op::Symlink(path, target) => outcome_of(
            &store
                .write(durable, namespace::symlink(p(&path), target))
                .await,
        ),
        Op::Remove(path, removal) => outcome_of(
            &store
                .write(durable, namespace::remove(p(&path), removal))
                .await,
        ),
        Op::Rename(from, to) => outcome_of(
            &store
                .write(durable, namespace::rename(p(&from), p(&to)))
                .await,
        ),
        Op::Reopen => Outcome::Done,
    }
}

/// The whole tree as the store shows it, read by listing from the root.
fn tree(store: &Store) -> BTreeMap<String, Node> {
    let mut tree = BTreeMap::from([("/".to_owned(), Node::Dir)]);
    let mut dirs = vec![StorePath::root()];
    while let Some(dir) = dirs.pop() {
        let (entries, more) = store.list(&dir, "", 10_000).unwrap();
        assert!(!more);
        for stat in entries {
            let path = p(&stat.path);
            check_name(path.split_last().unwrap().1).unwrap();
            let node = match stat.kind {
                EntryKind::Directory => {
                    dirs.push(path.clone());
                    Node::Dir
                }
                EntryKind::File => Node::File(store.get(&path).unwrap().0),
                EntryKind::Symlink => Node::Link(stat.target),
                other => panic!("{path}: a {other:?} no operation makes"),
            };
            assert_eq!(store.stat(&path).unwrap().kind, stat.kind);
            tree.insert(stat.path, node);
        }
    }
    tree
}

/// Paths over a small alphabet, so that operations collide often.
fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 0..4)
        .prop_map(|names| format!("/{}", names.join("/")))
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..16),
        // Past inline_max: a content file of its own.
        1 => (any::<u8>(), 4097..6000usize).prop_map(|(byte, len)| vec![byte; len]),
    ]
}

fn parents() -> impl Strategy<Value = Parents> {
    prop_oneof![Just(Parents::Create), Just(Parents::MustExist)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (path(), value(), parents()).prop_map(|(p, v, d)| Op::Put(p, v, d)),
        3 => (path(), parents()).prop_map(|(p, d)| Op::Mkdir(p, d)),
        1 => (path(), "[a-z./]{1,12}").prop_map(|(p, t)| Op::Symlink(p, t)),
        2 => (path(), prop_oneof![Just(Removal::Single), Just(Removal::Recursive)])
            .prop_map(|(p, r)| Op::Remove(p, r)),
        3 => (path(), path()).prop_map(|(f, t)| Op::Rename(f, t)),
        1 => Just(Op::Reopen),
    ]
}

/// Runs `ops` on a fresh store and on the model, comparing after each.
fn agrees_with_the_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default();
    let mut store = Store::open(dir.path(), config.clone()).unwrap();
    let mut model = Model::new();
    for (i, op) in ops.iter().enumerate() {
        let before = model.clone();
        let expected = model.apply(op);
        let got = if let Op::Reopen = op {
            drop(store);
            store = Store::open(dir.path(), config.clone()).unwrap();
            Outcome::Done
        } else {
            runtime.block_on(run(&store, op))
        };
        prop_assert_eq!(got, expected, "op {} {:?} on {:?}", i, op, before.0);
        if expected != Outcome::Done {
            prop_assert_eq!(&model.0, &before.0, "the model changed on a refusal");
        }
        prop_assert_eq!(tree(&store), model.0.clone(), "after op {} {:?}", i, op);
    }
    Ok(())
}

fn regressions() -> Option<Box<dyn proptest::test_runner::FailurePersistence>> {
    Some(Box::new(FileFailurePersistence::WithSource(
        "proptest-regressions",
    )))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        failure_persistence: regressions(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_store_agrees_with_a_model_of_its_namespace(ops in prop::collection::vec(op(), 1..24)) {
        agrees_with_the_model(ops)?;
    }
}

proptest! {
    // PROPTEST_CASES (scripts/fuzz sets it) decides how many.
    #![proptest_config(ProptestConfig {
        failure_persistence: regressions(),
        ..ProptestConfig::default()
    })]

    #[test]
    #[ignore = "fuzzing at scale: run by scripts/fuzz"]
    fn fuzz_the_store_against_a_model_of_its_namespace(ops in prop::collection::vec(op(), 1..64)) {
        agrees_with_the_model(ops)?;
    }
}
