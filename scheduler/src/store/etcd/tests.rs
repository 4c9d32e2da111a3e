use super::*;

fn kv_rev(key: &str, mod_revision: i64) -> pb::mvccpb::KeyValue {
    pb::mvccpb::KeyValue {
        key: Bytes::copy_from_slice(key.as_bytes()),
        mod_revision,
        create_revision: 1,
        version: 1,
        ..Default::default()
    }
}

fn read(kvs: Vec<pb::mvccpb::KeyValue>) -> pb::etcdserverpb::ResponseOp {
    pb::etcdserverpb::ResponseOp {
        response: Some(response_op::Response::ResponseRange(
            pb::etcdserverpb::RangeResponse {
                kvs,
                ..Default::default()
            },
        )),
    }
}

#[test]
fn preconditions_become_compares() {
    let key = Bytes::from_static(b"/p/k");
    assert_eq!(compare_for(key.clone(), Precondition::Any), None);
    let absent = compare_for(key.clone(), Precondition::Absent).unwrap();
    assert_eq!(
        (absent.result, absent.target, absent.target_union),
        (
            compare::CompareResult::Equal as i32,
            compare::CompareTarget::Create as i32,
            Some(compare::TargetUnion::CreateRevision(0))
        )
    );
    let cas = compare_for(key.clone(), Precondition::ModRevision(7)).unwrap();
    assert_eq!(
        (cas.result, cas.target, cas.target_union),
        (
            compare::CompareResult::Equal as i32,
            compare::CompareTarget::Mod as i32,
            Some(compare::TargetUnion::ModRevision(7))
        )
    );
    let never = compare_for(key, Precondition::ModRevision(0)).unwrap();
    assert_eq!(
        (never.result, never.target, never.target_union),
        (
            compare::CompareResult::Less as i32,
            compare::CompareTarget::Version as i32,
            Some(compare::TargetUnion::Version(0))
        )
    );
}

#[test]
fn a_refused_txn_names_the_first_failing_key_in_op_order() {
    let ops = vec![
        Op::put("free", "x", Precondition::Any),
        Op::put("a", "x", Precondition::ModRevision(5)),
        Op::put("b", "x", Precondition::Absent),
        Op::delete("c", Precondition::ModRevision(9)),
    ];
    // "a" holds (mod 5), "b" exists (fails), "c" is absent (fails): "b" is named.
    let response = TxnResponse {
        responses: vec![
            read(vec![kv_rev("/p/a", 5)]),
            read(vec![kv_rev("/p/b", 3)]),
            read(vec![]),
        ],
        ..Default::default()
    };
    match conflict(&ops, response) {
        StoreError::Conflict { key } => assert_eq!(key, "b"),
        other => panic!("expected a conflict on b, got {other:?}"),
    }
    // State on which every precondition holds: etcd's answer makes no sense.
    let response = TxnResponse {
        responses: vec![
            read(vec![kv_rev("/p/a", 5)]),
            read(vec![]),
            read(vec![kv_rev("/p/c", 9)]),
        ],
        ..Default::default()
    };
    assert!(matches!(
        conflict(&ops, response),
        StoreError::Backend { .. }
    ));
}
