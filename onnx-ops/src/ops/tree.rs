//! Turns the `nodes_*` and `class_*`/`target_*` attributes of the ai.onnx.ml tree ensembles
//! into the flat tables of tract-onnx-opl's tree engine, after checking everything that
//! engine takes on trust.
//!
//! The engine walks its tables with unchecked indexing, so a child id, a leaf range or a
//! class id that points outside them is memory corruption, and a cycle is a hang. A model
//! is untrusted input: every id is resolved and bounds-checked here, and every tree is
//! checked to be acyclic, before a table is built. tract's own parser does not do this,
//! which is one reason `TreeEnsembleClassifier` is re-registered by this crate.

use std::collections::{BTreeMap, HashMap};

use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;
use tract_onnx_opl::ml::tree::{Aggregate, Cmp, TreeEnsemble, TreeEnsembleData};

/// The `post_transform` attribute shared by the tree, linear and SVM operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    pub(crate) fn parse(node: &NodeProto) -> TractResult<Self> {
        Ok(
            match node
                .get_attr_opt::<&str>("post_transform")?
                .unwrap_or("NONE")
            {
                "NONE" => Self::None,
                "LOGISTIC" => Self::Logistic,
                "SOFTMAX" => Self::Softmax,
                "SOFTMAX_ZERO" => Self::SoftmaxZero,
                "PROBIT" => Self::Probit,
                other => bail!("unknown post_transform {other:?}"),
            },
        )
    }
}

/// Which leaf attributes carry the votes: `class_*` for classifiers, `target_*` for regressors.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Votes {
    Class,
    Target,
}

impl Votes {
    fn attr(self, suffix: &str) -> String {
        match self {
            Votes::Class => format!("class_{suffix}"),
            Votes::Target => format!("target_{suffix}"),
        }
    }
}

/// A validated ensemble plus the facts about its votes that the operators' output
/// semantics depend on.
#[derive(Clone, Debug)]
pub(crate) struct ParsedEnsemble {
    pub ensemble: TreeEnsemble,
    /// Distinct tree ids: onnxruntime divides by this for `AVERAGE`.
    pub n_trees: usize,
    /// For each output column, whether any leaf votes for it.
    pub voted: Vec<bool>,
    /// No vote weight is negative; onnxruntime picks the binary-classifier layout on it.
    pub weights_non_negative: bool,
}

// Row layout of the engine's `nodes` table (see tract-onnx-opl `ml/tree.rs`): a branch is
// [feature, true row, false row, threshold bits, comparator | 0x100 if NaN goes true], a
// leaf is [first vote, end of votes, 0, 0, 0] (comparator byte 0 marks a leaf).
const NAN_IS_TRUE: u32 = 0x100;

enum Mode {
    Leaf,
    Branch {
        cmp: Cmp,
        swap: bool,
        nan_always_true: bool,
    },
}

fn parse_mode(mode: &str) -> TractResult<Mode> {
    let branch = |cmp| Mode::Branch {
        cmp,
        swap: false,
        nan_always_true: false,
    };
    Ok(match mode {
        "LEAF" => Mode::Leaf,
        "BRANCH_LEQ" => branch(Cmp::LessEqual),
        "BRANCH_LT" => branch(Cmp::Less),
        "BRANCH_GT" => branch(Cmp::Greater),
        "BRANCH_EQ" => branch(Cmp::Equal),
        // `NaN != v` holds, so onnxruntime sends NaN down the true branch whatever the
        // missing-value flag says; the engine only looks at the flag for NaN.
        "BRANCH_NEQ" => Mode::Branch {
            cmp: Cmp::NotEqual,
            swap: false,
            nan_always_true: true,
        },
        // The engine decodes comparator bytes 1..=5 only, so a GreaterEqual node would be
        // read as a leaf. `x >= v` is `!(x < v)` for every non-NaN x, so it becomes a `<`
        // with the children swapped (and the NaN flag inverted, see `flatten`).
        "BRANCH_GTE" => Mode::Branch {
            cmp: Cmp::Less,
            swap: true,
            nan_always_true: false,
        },
        other => bail!("unknown node mode {other:?}"),
    })
}

fn same_len(node: &NodeProto, attr: &str, len: usize, expected: usize) -> TractResult<()> {
    node.expect_attr(attr, len == expected, || {
        format!("{expected} values, got {len}")
    })
}

fn to_u32(value: usize, what: &str) -> TractResult<u32> {
    u32::try_from(value).map_err(|_| format_err!("{what} {value} does not fit the tree tables"))
}

/// Parses and validates an ensemble with `n_outputs` score columns (classes or targets).
pub(crate) fn parse(
    node: &NodeProto,
    votes: Votes,
    n_outputs: usize,
) -> TractResult<ParsedEnsemble> {
    for attr in [
        "nodes_values_as_tensor".to_string(),
        "nodes_hitrates_as_tensor".to_string(),
        "base_values_as_tensor".to_string(),
        votes.attr("weights_as_tensor"),
    ] {
        node.expect_attr(
            &attr,
            node.attribute.iter().all(|a| a.name != attr),
            "absent: double-precision trees are not supported by the f32 tree engine",
        )?;
    }
    node.expect(n_outputs > 0, "at least one class or target")?;

    let tree_ids = node.get_attr_slice::<i64>("nodes_treeids")?;
    let n_nodes = tree_ids.len();
    node.expect_attr("nodes_treeids", n_nodes > 0, "at least one node")?;
    let node_ids = node.get_attr_slice::<i64>("nodes_nodeids")?;
    let feature_ids = node.get_attr_slice::<i64>("nodes_featureids")?;
    let values = node.get_attr_slice::<f32>("nodes_values")?;
    let true_ids = node.get_attr_slice::<i64>("nodes_truenodeids")?;
    let false_ids = node.get_attr_slice::<i64>("nodes_falsenodeids")?;
    let modes = node.get_attr_tvec::<&str>("nodes_modes")?;
    let missing = node.get_attr_opt_slice::<i64>("nodes_missing_value_tracks_true")?;
    same_len(node, "nodes_nodeids", node_ids.len(), n_nodes)?;
    same_len(node, "nodes_featureids", feature_ids.len(), n_nodes)?;
    same_len(node, "nodes_values", values.len(), n_nodes)?;
    same_len(node, "nodes_truenodeids", true_ids.len(), n_nodes)?;
    same_len(node, "nodes_falsenodeids", false_ids.len(), n_nodes)?;
    same_len(node, "nodes_modes", modes.len(), n_nodes)?;
    if let Some(missing) = missing {
        same_len(
            node,
            "nodes_missing_value_tracks_true",
            missing.len(),
            n_nodes,
        )?;
    }
    let modes: Vec<Mode> = modes
        .iter()
        .map(|m| parse_mode(m))
        .collect::<TractResult<_>>()?;

    let vote_tree_ids = node.get_attr_slice::<i64>(&votes.attr("treeids"))?;
    let n_votes = vote_tree_ids.len();
    node.expect_attr(
        &votes.attr("treeids"),
        n_votes > 0,
        "at least one leaf vote",
    )?;
    let vote_node_ids = node.get_attr_slice::<i64>(&votes.attr("nodeids"))?;
    let vote_ids = node.get_attr_slice::<i64>(&votes.attr("ids"))?;
    let vote_weights = node.get_attr_slice::<f32>(&votes.attr("weights"))?;
    same_len(node, &votes.attr("nodeids"), vote_node_ids.len(), n_votes)?;
    same_len(node, &votes.attr("ids"), vote_ids.len(), n_votes)?;
    same_len(node, &votes.attr("weights"), vote_weights.len(), n_votes)?;

    // Trees in ascending id, nodes in ascending id within a tree: the smallest id is the
    // root (the spec numbers every tree from 0).
    let mut trees: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (ix, tree) in tree_ids.iter().enumerate() {
        trees.entry(*tree).or_default().push(ix);
    }
    let mut row_of: HashMap<(i64, i64), usize> = HashMap::with_capacity(n_nodes);
    let mut order = Vec::with_capacity(n_nodes);
    let mut roots = Vec::with_capacity(trees.len());
    for (tree, members) in trees.iter_mut() {
        members.sort_by_key(|&ix| node_ids[ix]);
        roots.push(to_u32(order.len(), "node row")?);
        for &ix in members.iter() {
            if row_of.insert((*tree, node_ids[ix]), order.len()).is_some() {
                bail!("node {} appears twice in tree {tree}", node_ids[ix]);
            }
            order.push(ix);
        }
    }

    // Votes grouped by the leaf they belong to, in attribute order within a leaf.
    let mut votes_of: Vec<Vec<usize>> = vec![vec![]; n_nodes];
    let mut voted = vec![false; n_outputs];
    for v in 0..n_votes {
        let key = (vote_tree_ids[v], vote_node_ids[v]);
        let row = *row_of.get(&key).with_context(|| {
            format!(
                "a vote names node {} of tree {}, which does not exist",
                key.1, key.0
            )
        })?;
        ensure!(
            matches!(modes[order[row]], Mode::Leaf),
            "a vote names node {} of tree {}, which is not a leaf",
            key.1,
            key.0
        );
        let class = usize::try_from(vote_ids[v])
            .ok()
            .filter(|c| *c < n_outputs)
            .with_context(|| format!("vote id {} is outside 0..{n_outputs}", vote_ids[v]))?;
        voted[class] = true;
        votes_of[row].push(v);
    }

    let mut nodes: Vec<u32> = Vec::with_capacity(n_nodes * 5);
    let mut leaves: Vec<u32> = Vec::with_capacity(n_votes * 2);
    // None for a leaf, the two child rows for a branch.
    let mut children: Vec<Option<[usize; 2]>> = Vec::with_capacity(n_nodes);
    let mut max_used_feature = 0usize;
    for (row, &ix) in order.iter().enumerate() {
        match modes[ix] {
            Mode::Leaf => {
                let start = to_u32(leaves.len() / 2, "vote")?;
                for &v in &votes_of[row] {
                    // `vote_ids[v]` was range-checked above.
                    leaves.push(to_u32(vote_ids[v] as usize, "vote id")?);
                    leaves.push(vote_weights[v].to_bits());
                }
                let end = to_u32(leaves.len() / 2, "vote")?;
                nodes.extend([start, end, 0, 0, 0]);
                children.push(None);
            }
            Mode::Branch {
                cmp,
                swap,
                nan_always_true,
            } => {
                let child = |id: i64| {
                    row_of.get(&(tree_ids[ix], id)).copied().with_context(|| {
                        format!(
                            "node {} of tree {} points to node {id}, which is not in that tree",
                            node_ids[ix], tree_ids[ix]
                        )
                    })
                };
                let (mut t, mut f) = (child(true_ids[ix])?, child(false_ids[ix])?);
                let feature = usize::try_from(feature_ids[ix])
                    .map_err(|_| format_err!("negative feature id {}", feature_ids[ix]))?;
                max_used_feature = max_used_feature.max(feature);
                let mut nan_true = missing.is_some_and(|m| m[ix] != 0);
                if swap {
                    std::mem::swap(&mut t, &mut f);
                    nan_true = !nan_true;
                }
                nan_true |= nan_always_true;
                nodes.extend([
                    to_u32(feature, "feature id")?,
                    to_u32(t, "node row")?,
                    to_u32(f, "node row")?,
                    values[ix].to_bits(),
                    cmp as u32 | if nan_true { NAN_IS_TRUE } else { 0 },
                ]);
                children.push(Some([t, f]));
            }
        }
    }
    for &root in &roots {
        check_acyclic(root as usize, &children)?;
    }

    let data = TreeEnsembleData {
        trees: rctensor1(&roots),
        nodes: tensor1(&nodes).into_shape(&[n_nodes, 5])?.into_arc_tensor(),
        leaves: tensor1(&leaves)
            .into_shape(&[leaves.len() / 2, 2])?
            .into_arc_tensor(),
    };
    // The engine's own AVERAGE/MIN/MAX differ from onnxruntime's (it averages over votes
    // cast, and MIN/MAX start from 0), so it always sums and the operators finish the job.
    let ensemble = TreeEnsemble::build(data, max_used_feature, n_outputs, Aggregate::Sum)?;
    Ok(ParsedEnsemble {
        ensemble,
        n_trees: roots.len(),
        voted,
        weights_non_negative: !vote_weights.iter().any(|w| *w < 0.0),
    })
}

/// Fails if a walk from `root` can come back to a node it is still below, which would make
/// the engine loop forever. Iterative, so a deep tree cannot overflow the stack.
fn check_acyclic(root: usize, children: &[Option<[usize; 2]>]) -> TractResult<()> {
    #[derive(Clone, Copy, PartialEq)]
    enum Seen {
        No,
        OnPath,
        Done,
    }
    let mut seen = vec![Seen::No; children.len()];
    // (row, index of the next child to visit)
    let mut stack = vec![(root, 0usize)];
    seen[root] = Seen::OnPath;
    while let Some((row, next)) = stack.last_mut() {
        let child = match children[*row] {
            Some([t, f]) if *next < 2 => {
                if *next == 0 {
                    t
                } else {
                    f
                }
            }
            // A leaf, or a branch whose two subtrees are done.
            _ => {
                seen[*row] = Seen::Done;
                stack.pop();
                continue;
            }
        };
        *next += 1;
        match seen[child] {
            Seen::OnPath => bail!("tree nodes form a cycle"),
            Seen::Done => {}
            Seen::No => {
                seen[child] = Seen::OnPath;
                stack.push((child, 0));
            }
        }
    }
    Ok(())
}

/// Checks, when the feature count is known at load time, that every feature a tree tests
/// exists; the engine checks it again at run time for symbolic widths.
pub(crate) fn check_feature_count(
    model: &TypedModel,
    input: OutletId,
    ensemble: &TreeEnsemble,
) -> TractResult<()> {
    let fact = model.outlet_fact(input)?;
    ensure!(
        fact.rank() == 2,
        "tree ensembles take a [N, features] input, got rank {}",
        fact.rank()
    );
    if let Some(width) = fact.shape[1].as_i64() {
        ensemble.check_n_features(usize::try_from(width).unwrap_or(0))?;
    }
    Ok(())
}

/// Wires tract-onnx-opl's engine: `[N, features]` in, summed votes `[N, n_outputs]` out.
pub(crate) fn wire_engine(
    prefix: &str,
    model: &mut TypedModel,
    input: OutletId,
    ensemble: &TreeEnsemble,
) -> TractResult<OutletId> {
    check_feature_count(model, input, ensemble)?;
    let op = tract_onnx_opl::ml::tree_ensemble_classifier::TreeEnsembleClassifier {
        ensemble: ensemble.clone(),
    };
    Ok(model.wire_node(format!("{prefix}.trees"), op, &[input])?[0])
}

/// Adds a `[1, n]` f32 constant to `x` (`[N, n]`).
pub(crate) fn wire_add_row(
    name: String,
    model: &mut TypedModel,
    x: OutletId,
    row: &[f32],
) -> TractResult<OutletId> {
    let konst = model.add_const(
        format!("{name}.value"),
        tensor1(row).into_shape(&[1, row.len()])?,
    )?;
    Ok(model.wire_node(name, tract_onnx::tract_core::ops::math::add(), &[x, konst])?[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Attr, node};

    fn stump(modes: &[&str], truth: &[i64], falsy: &[i64]) -> NodeProto {
        let n = modes.len();
        node(
            "TreeEnsembleRegressor",
            &[
                ("nodes_treeids", Attr::Ints(vec![0; n])),
                ("nodes_nodeids", Attr::Ints((0..n as i64).collect())),
                ("nodes_featureids", Attr::Ints(vec![0; n])),
                ("nodes_values", Attr::Floats(vec![0.5; n])),
                (
                    "nodes_modes",
                    Attr::Strings(modes.iter().map(|s| s.to_string()).collect()),
                ),
                ("nodes_truenodeids", Attr::Ints(truth.to_vec())),
                ("nodes_falsenodeids", Attr::Ints(falsy.to_vec())),
                ("target_treeids", Attr::Ints(vec![0, 0])),
                ("target_nodeids", Attr::Ints(vec![1, 2])),
                ("target_ids", Attr::Ints(vec![0, 0])),
                ("target_weights", Attr::Floats(vec![1.0, 2.0])),
                ("n_targets", Attr::Int(1)),
            ],
        )
    }

    #[test]
    fn a_well_formed_stump_parses() {
        let parsed = parse(
            &stump(&["BRANCH_LEQ", "LEAF", "LEAF"], &[1, 0, 0], &[2, 0, 0]),
            Votes::Target,
            1,
        )
        .unwrap();
        assert_eq!(parsed.n_trees, 1);
        assert_eq!(parsed.voted, vec![true]);
        assert!(parsed.weights_non_negative);
    }

    #[test]
    fn children_outside_the_tree_are_rejected() {
        let err = parse(
            &stump(&["BRANCH_LEQ", "LEAF", "LEAF"], &[1, 0, 0], &[7, 0, 0]),
            Votes::Target,
            1,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("not in that tree"), "{err:#}");
    }

    #[test]
    fn cycles_are_rejected() {
        let mut n = stump(
            &["BRANCH_LEQ", "BRANCH_LEQ", "LEAF", "LEAF"],
            &[1, 0, 0, 0],
            &[2, 3, 0, 0],
        );
        // Node 1's true child is the root; the votes sit on the real leaves 2 and 3.
        for a in n.attribute.iter_mut() {
            if a.name == "target_nodeids" {
                a.ints = vec![2, 3];
            }
        }
        let err = parse(&n, Votes::Target, 1).unwrap_err();
        assert!(format!("{err:#}").contains("cycle"), "{err:#}");
    }

    #[test]
    fn vote_ids_outside_the_outputs_are_rejected() {
        let err = parse(
            &stump(&["BRANCH_LEQ", "LEAF", "LEAF"], &[1, 0, 0], &[2, 0, 0]),
            Votes::Target,
            0,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("at least one"), "{err:#}");
        let mut n = stump(&["BRANCH_LEQ", "LEAF", "LEAF"], &[1, 0, 0], &[2, 0, 0]);
        for a in n.attribute.iter_mut() {
            if a.name == "target_ids" {
                a.ints = vec![0, 3];
            }
        }
        let err = parse(&n, Votes::Target, 1).unwrap_err();
        assert!(format!("{err:#}").contains("outside 0..1"), "{err:#}");
    }

    #[test]
    fn duplicate_nodes_and_bad_modes_are_rejected() {
        let mut n = stump(&["BRANCH_LEQ", "LEAF", "LEAF"], &[1, 0, 0], &[2, 0, 0]);
        for a in n.attribute.iter_mut() {
            if a.name == "nodes_nodeids" {
                a.ints = vec![0, 1, 1];
            }
        }
        assert!(format!("{:#}", parse(&n, Votes::Target, 1).unwrap_err()).contains("twice"));
        let n = stump(
            &["BRANCH_LEQ", "LEAF", "BRANCH_SOMETIMES"],
            &[1, 0, 0],
            &[2, 0, 0],
        );
        assert!(format!("{:#}", parse(&n, Votes::Target, 1).unwrap_err()).contains("mode"));
    }

    #[test]
    fn double_precision_trees_are_rejected_by_name() {
        let mut n = stump(&["BRANCH_LEQ", "LEAF", "LEAF"], &[1, 0, 0], &[2, 0, 0]);
        n.attribute.push(crate::test_util::attr(
            "nodes_values_as_tensor",
            Attr::Floats(vec![]),
        ));
        assert!(
            format!("{:#}", parse(&n, Votes::Target, 1).unwrap_err()).contains("double-precision")
        );
    }
}
