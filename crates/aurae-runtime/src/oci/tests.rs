use serde_json::{Value, json};
use tempfile::TempDir;

use super::*;
use crate::spec::{AbsolutePath, Limits, Mount, MountKind, NetworkMode, Rlimit};

const RUNC_SPEC: &str = include_str!("testdata/runc-spec.json");

fn runc_default() -> Value {
    serde_json::from_str(RUNC_SPEC).unwrap()
}

/// A bundle directory holding `config` and an empty `rootfs`.
fn bundle(config: &Value) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rootfs")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(config).unwrap(),
    )
    .unwrap();
    dir
}

fn load(config: &Value) -> Result<Bundle, OciError> {
    let dir = bundle(config);
    load_bundle(dir.path(), "web/api".parse().unwrap())
}

/// The field a refusal names, panicking if the bundle was accepted.
fn refused(config: &Value) -> (String, OciError) {
    let err = load(config).expect_err("the bundle was accepted");
    (err.field().unwrap_or_default().to_owned(), err)
}

#[test]
fn runc_spec_default_bundle_translates() {
    let dir = bundle(&runc_default());
    let bundle = load_bundle(dir.path(), "web/api".parse().unwrap()).unwrap();
    let rootfs = dir.path().join("rootfs").canonicalize().unwrap();

    let exe = &bundle.executable;
    assert_eq!(exe.name.as_str(), EXECUTABLE_NAME);
    assert_eq!(exe.argv, ["sh"]);
    assert_eq!(
        exe.env,
        [
            (
                "PATH".to_owned(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()
            ),
            ("TERM".to_owned(), "xterm".to_owned()),
        ]
    );
    assert_eq!(exe.cwd, Some(AbsolutePath::parse("cwd", "/").unwrap()));
    assert_eq!((exe.uid, exe.gid), (Some(0), Some(0)));
    assert_eq!(
        exe.rlimits,
        [Rlimit {
            resource: 7,
            soft: 1024,
            hard: 1024
        }]
    );
    assert_eq!(exe.stop_grace, STOP_GRACE);
    assert!(bundle.terminal);

    let cell = &bundle.cell;
    assert_eq!(cell.name.to_string(), "web/api");
    assert_eq!(cell.rootfs.as_ref().unwrap().as_path(), rootfs);
    assert!(cell.rootfs_read_only);
    assert_eq!(cell.hostname.as_deref(), Some("runc"));
    assert_eq!(cell.isolation.network, NetworkMode::Loopback);
    assert_eq!(cell.isolation.user_namespace, None);
    assert_eq!(cell.limits, Limits::default());
    assert_eq!(
        cell.mounts,
        [
            Mount {
                destination: AbsolutePath::parse("d", "/proc").unwrap(),
                kind: MountKind::Proc,
            },
            Mount {
                destination: AbsolutePath::parse("d", "/dev/shm").unwrap(),
                kind: MountKind::Tmpfs {
                    size: Some(65536 * 1024)
                },
            },
        ]
    );

    let not_applied: Vec<&str> = bundle
        .not_applied
        .iter()
        .map(|n| n.field.as_str())
        .collect();
    assert_eq!(
        not_applied,
        [
            "process.terminal",
            "process.capabilities.ambient",
            "mounts[1]",
            "mounts[2]",
            "mounts[3].options",
            "mounts[4]",
            "mounts[5]",
            "mounts[6]",
            "linux.resources.devices",
        ]
    );
}

#[test]
fn hooks_are_refused_by_name() {
    let mut config = runc_default();
    config["hooks"] = json!({"prestart": [{"path": "/usr/bin/setup-net"}]});
    let (field, err) = refused(&config);
    assert_eq!(field, "hooks");
    assert!(err.to_string().contains("prestart"), "{err}");
    assert!(
        err.to_string().contains("remove it from the bundle"),
        "{err}"
    );
}

#[test]
fn empty_hooks_are_accepted() {
    let mut config = runc_default();
    config["hooks"] = json!({"prestart": []});
    load(&config).unwrap();
}

#[test]
fn seccomp_is_refused_by_name() {
    let mut config = runc_default();
    config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW"});
    let (field, err) = refused(&config);
    assert_eq!(field, "linux.seccomp");
    assert!(matches!(err, OciError::Unsupported { .. }));
    assert!(
        err.to_string()
            .starts_with("config.json field `linux.seccomp` is not supported by aurae: "),
        "{err}"
    );
}

#[test]
fn joining_an_existing_namespace_is_refused_by_name() {
    let mut config = runc_default();
    config["linux"]["namespaces"][1] = json!({"type": "network", "path": "/var/run/netns/x"});
    assert_eq!(refused(&config).0, "linux.namespaces[1].path");
}

#[test]
fn time_namespaces_and_missing_private_namespaces_are_refused() {
    let mut config = runc_default();
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    assert_eq!(refused(&config).0, "linux.namespaces[5].type");

    let mut config = runc_default();
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let (field, err) = refused(&config);
    assert_eq!(field, "linux.namespaces");
    assert!(err.to_string().contains("pid"), "{err}");
}

#[test]
fn network_namespace_absent_means_host_network() {
    let mut config = runc_default();
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    let bundle = load(&config).unwrap();
    assert_eq!(bundle.cell.isolation.network, NetworkMode::Host);
}

#[test]
fn a_user_namespace_maps_one_range() {
    let mut config = runc_default();
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let mapping = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    config["linux"]["uidMappings"] = mapping.clone();
    config["linux"]["gidMappings"] = mapping;
    let bundle = load(&config).unwrap();
    assert_eq!(
        bundle.cell.isolation.user_namespace,
        Some(crate::spec::IdMapping {
            host_id: 100000,
            size: 65536
        })
    );

    config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    assert_eq!(refused(&config).0, "linux.gidMappings");
}

#[test]
fn resources_map_to_limits() {
    let mut config = runc_default();
    config["linux"]["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 536870912, "swap": 805306368},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1,3"},
        "pids": {"limit": 64},
        "blockIO": {"weight": 500}
    });
    let limits = load(&config).unwrap().cell.limits;
    assert_eq!(limits.memory.max, Some(512 << 20));
    assert_eq!(limits.memory.swap, Some(256 << 20));
    assert_eq!(limits.memory.high, None);
    // 1 + (1024 - 2) * 9999 / 262142 = 39 (runc's conversion).
    assert_eq!(limits.cpu.weight, Some(39));
    assert_eq!(limits.cpu.quota_us, Some(50000));
    assert_eq!(limits.cpu.period_us, Some(100000));
    assert_eq!(limits.cpuset.as_deref(), Some("0-1,3"));
    assert_eq!(limits.pids_max, Some(64));
    // 1 + (500 - 10) * 9999 / 990 = 4950.
    assert_eq!(limits.io_weight, Some(4950));
}

#[test]
fn weight_conversions_cover_their_ranges() {
    assert_eq!(linux::shares_to_weight(2), 1);
    assert_eq!(linux::shares_to_weight(262_144), 10_000);
    assert_eq!(linux::blkio_to_io_weight(10), 1);
    assert_eq!(linux::blkio_to_io_weight(1000), 10_000);
}

#[test]
fn unenforceable_resources_are_refused_by_name() {
    for (resources, field) in [
        (
            json!({"memory": {"reservation": 1024}}),
            "linux.resources.memory.reservation",
        ),
        (
            json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}),
            "linux.resources.hugepageLimits",
        ),
        (
            json!({"devices": [{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}),
            "linux.resources.devices[0].allow",
        ),
        (
            json!({"unified": {"memory.high": "1G"}}),
            "linux.resources.unified",
        ),
        (
            json!({"memory": {"swap": 1024}}),
            "linux.resources.memory.swap",
        ),
        (json!({"cpu": {"shares": 1}}), "linux.resources.cpu.shares"),
    ] {
        let mut config = runc_default();
        config["linux"]["resources"] = resources;
        assert_eq!(refused(&config).0, field);
    }
}

#[test]
fn missing_rootfs_is_invalid_root_path() {
    let mut config = runc_default();
    config["root"]["path"] = json!("no-such-rootfs");
    let (field, err) = refused(&config);
    assert_eq!(field, "root.path");
    assert!(matches!(err, OciError::Invalid { .. }));
}

#[test]
fn malformed_json_is_a_parse_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), b"{\"ociVersion\": ").unwrap();
    let err = load_bundle(dir.path(), "web".parse().unwrap()).unwrap_err();
    assert!(matches!(err, OciError::Parse { .. }), "{err}");
}

#[test]
fn a_missing_config_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_bundle(dir.path(), "web".parse().unwrap()).unwrap_err();
    assert!(matches!(err, OciError::ReadConfig { .. }), "{err}");
}

#[test]
fn process_fields_are_checked_by_name() {
    for (pointer, value, field) in [
        ("/process/env/1", json!("NOEQUALS"), "process.env[1]"),
        (
            "/process/user/additionalGids",
            json!([10]),
            "process.user.additionalGids",
        ),
        (
            "/process/apparmorProfile",
            json!("x"),
            "process.apparmorProfile",
        ),
        ("/process/args", json!([]), "process.args"),
        ("/process/cwd", json!("relative"), "process.cwd"),
        ("/hostname", json!("Bad_Host"), "hostname"),
        ("/ociVersion", json!("2.0.0"), "ociVersion"),
        (
            "/linux/maskedPaths/0",
            json!("proc/kcore"),
            "linux.maskedPaths[0]",
        ),
        (
            "/linux/sysctl",
            json!({"net.ipv4.ip_forward": "1"}),
            "linux.sysctl",
        ),
    ] {
        let mut config = runc_default();
        *pointer_parent(&mut config, pointer) = value;
        assert_eq!(refused(&config).0, field, "for {pointer}");
    }
}

/// `config[pointer]`, creating the last key of an object if absent.
fn pointer_parent<'a>(config: &'a mut Value, pointer: &str) -> &'a mut Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = config.pointer_mut(parent).unwrap();
    match parent {
        Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
        Value::Object(map) => map.entry(key).or_insert(Value::Null),
        _ => panic!("{pointer} has no parent"),
    }
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let mut config = runc_default();
    config["linux"]["resources"]["memory"] = json!({"limit": 1048576, "futureKnob": 1});
    assert_eq!(refused(&config).0, "linux.resources.memory.futureKnob");
}

#[test]
fn mounts_translate_binds_and_refuse_other_types() {
    let mut config = runc_default();
    let dir = bundle(&config);
    std::fs::create_dir(dir.path().join("data")).unwrap();
    config["mounts"] = json!([
        {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=64m"]},
        {"destination": "/mnt", "type": "nfs", "source": "server:/x"}
    ]);
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let err = load_bundle(dir.path(), "web".parse().unwrap()).unwrap_err();
    assert_eq!(err.field(), Some("mounts[2].type"));
    assert!(err.to_string().contains("'nfs'"), "{err}");

    config["mounts"].as_array_mut().unwrap().pop();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let mounts = load_bundle(dir.path(), "web".parse().unwrap())
        .unwrap()
        .cell
        .mounts;
    let data = dir.path().join("data").canonicalize().unwrap();
    assert_eq!(
        mounts[0].kind,
        MountKind::Bind {
            source: AbsolutePath::parse("s", data).unwrap(),
            read_only: true
        }
    );
    assert_eq!(
        mounts[1].kind,
        MountKind::Tmpfs {
            size: Some(64 << 20)
        }
    );
}
