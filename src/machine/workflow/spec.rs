//! Workflow definitions: the checks a submitted DAG must pass (names, limits, job templates,
//! dependencies, no cycle), and their resolution to step indexes.

use std::collections::{BTreeMap, BTreeSet};

use super::super::command::{in_range, Rejection};
use super::super::job::{validate_name, JobSpec};
use super::super::limits;
use super::{Condition, WorkflowSpec};

/// Dependencies of each step as indexes with conditions, and dependents of each step.
pub(crate) type Resolved = (Vec<Vec<(u32, Condition)>>, Vec<Vec<u32>>);

impl WorkflowSpec {
    /// Rough encoded size: the sum of its job templates.
    pub fn weight(&self) -> usize {
        self.steps
            .iter()
            .map(|s| {
                s.name.len()
                    + s.job.weight()
                    + s.compensate.as_ref().map_or(0, JobSpec::weight)
                    + s.depends_on.iter().map(|d| d.step.len() + 8).sum::<usize>()
            })
            .sum::<usize>()
            + self.name.len()
    }

    /// Checks the whole definition: names, limits, every job template, dependencies and the
    /// shape (no cycle). Run offline by `raftline dag validate`, by the server before it
    /// proposes, and by apply. The error names the step (`steps[NAME].field`).
    pub fn validate(&self) -> Result<(), Rejection> {
        self.resolve().map(|_| ())
    }

    /// Validates and resolves dependencies to indexes: (deps, dependents).
    pub(crate) fn resolve(&self) -> Result<Resolved, Rejection> {
        validate_name("name", &self.name, limits::WORKFLOW_NAME_BYTES_MAX)?;
        in_range(
            "max_parallel",
            self.max_parallel.into(),
            1,
            limits::WORKFLOW_PARALLEL_MAX.into(),
        )?;
        if self.steps.is_empty() {
            return Err(Rejection::invalid(
                "steps",
                "a workflow needs at least one step",
            ));
        }
        if self.steps.len() > limits::WORKFLOW_STEPS_MAX {
            return Err(Rejection::invalid(
                "steps",
                format!(
                    "has {} steps, the limit is {}",
                    self.steps.len(),
                    limits::WORKFLOW_STEPS_MAX
                ),
            ));
        }
        let weight = self.weight();
        if weight > limits::WORKFLOW_BYTES_MAX {
            return Err(Rejection::invalid(
                "steps",
                format!(
                    "the step definitions take about {weight} bytes, the limit is {}",
                    limits::WORKFLOW_BYTES_MAX
                ),
            ));
        }
        let mut by_name: BTreeMap<&str, u32> = BTreeMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            validate_name(
                &format!("steps[{i}].name"),
                &step.name,
                limits::STEP_NAME_BYTES_MAX,
            )?;
            if let Some(first) = by_name.insert(&step.name, i as u32) {
                return Err(Rejection::invalid(
                    format!("steps[{i}].name"),
                    format!("duplicate step name {:?} (also steps[{first}])", step.name),
                ));
            }
        }
        let edges: usize = self.steps.iter().map(|s| s.depends_on.len()).sum();
        if edges > limits::WORKFLOW_EDGES_MAX {
            return Err(Rejection::invalid(
                "steps",
                format!(
                    "has {edges} dependencies in all, the limit is {}",
                    limits::WORKFLOW_EDGES_MAX
                ),
            ));
        }
        let mut deps = vec![Vec::new(); self.steps.len()];
        let mut dependents = vec![Vec::new(); self.steps.len()];
        for (i, step) in self.steps.iter().enumerate() {
            let at = |field: &str| format!("steps[{}].{field}", step.name);
            let template = |prefix: &str, spec: &JobSpec| {
                spec.validate().map_err(|r| match r {
                    Rejection::Invalid { field, message } => {
                        Rejection::invalid(at(&format!("{prefix}{field}")), message)
                    }
                    other => other,
                })?;
                if spec.idempotency_key.is_some() {
                    return Err(Rejection::invalid(
                        at(&format!("{prefix}idempotency_key")),
                        "is not allowed in a workflow step",
                    ));
                }
                Ok(())
            };
            template("", &step.job)?;
            if let Some(c) = &step.compensate {
                template("compensate.", c)?;
            }
            let mut seen = BTreeSet::new();
            for (k, dep) in step.depends_on.iter().enumerate() {
                let field = at(&format!("depends_on[{k}]"));
                let Some(&j) = by_name.get(dep.step.as_str()) else {
                    return Err(Rejection::invalid(
                        field,
                        format!("unknown step {:?}", dep.step),
                    ));
                };
                if j as usize == i {
                    return Err(Rejection::invalid(field, "a step cannot depend on itself"));
                }
                if !seen.insert(j) {
                    return Err(Rejection::invalid(
                        field,
                        format!("{:?} is listed twice", dep.step),
                    ));
                }
                deps[i].push((j, dep.condition));
                dependents[j as usize].push(i as u32);
            }
        }
        if let Some(cycle) = find_cycle(&dependents) {
            let path: Vec<&str> = cycle
                .iter()
                .map(|&i| self.steps[i as usize].name.as_str())
                .collect();
            return Err(Rejection::invalid(
                format!("steps[{}].depends_on", path[0]),
                format!("cycle: {}", path.join(" -> ")),
            ));
        }
        Ok((deps, dependents))
    }
}

/// A cycle in the graph given by `next` (edges i -> next[i]), as its path with the first step
/// repeated at the end; `None` for a DAG. Iterative depth-first search in index order, so the
/// cycle reported is the same on every run.
fn find_cycle(next: &[Vec<u32>]) -> Option<Vec<u32>> {
    const WHITE: u8 = 0;
    const GREY: u8 = 1;
    const BLACK: u8 = 2;
    let mut color = vec![WHITE; next.len()];
    for root in 0..next.len() {
        if color[root] != WHITE {
            continue;
        }
        // (node, index of the next edge to follow)
        let mut stack: Vec<(u32, usize)> = vec![(root as u32, 0)];
        color[root] = GREY;
        while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
            if let Some(&to) = next[node as usize].get(*edge) {
                *edge += 1;
                match color[to as usize] {
                    WHITE => {
                        color[to as usize] = GREY;
                        stack.push((to, 0));
                    }
                    GREY => {
                        let start = stack.iter().position(|(n, _)| *n == to).expect("on stack");
                        let mut path: Vec<u32> = stack[start..].iter().map(|(n, _)| *n).collect();
                        path.push(to);
                        return Some(path);
                    }
                    _ => {}
                }
            } else {
                color[node as usize] = BLACK;
                stack.pop();
            }
        }
    }
    None
}
