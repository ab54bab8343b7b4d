//! Derivative-free minimisation (Nelder–Mead), enough for the few-parameter likelihoods here.

/// The result of a minimisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
    pub converged: bool,
}

/// Minimises `f` from `start` with the Nelder–Mead simplex method (standard coefficients). Stops when
/// the simplex's values agree within `tolerance` or after `max_iterations`.
pub fn nelder_mead(
    f: impl Fn(&[f64]) -> f64,
    start: &[f64],
    step: f64,
    tolerance: f64,
    max_iterations: usize,
) -> Minimum {
    let n = start.len();
    // A non-finite value (outside the model's domain) must lose every comparison.
    let eval = |x: &[f64]| {
        let v = f(x);
        if v.is_finite() { v } else { f64::INFINITY }
    };
    let mut simplex: Vec<Vec<f64>> = vec![start.to_vec()];
    for i in 0..n {
        let mut p = start.to_vec();
        p[i] += step;
        simplex.push(p);
    }
    let mut values: Vec<f64> = simplex.iter().map(|p| eval(p)).collect();
    let mut iterations = 0;
    let mut converged = false;
    while iterations < max_iterations {
        iterations += 1;
        let mut order: Vec<usize> = (0..=n).collect();
        order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
        simplex = order.iter().map(|&i| simplex[i].clone()).collect();
        values = order.iter().map(|&i| values[i]).collect();
        if (values[n] - values[0]).abs() <= tolerance * (1.0 + values[0].abs()) {
            converged = true;
            break;
        }
        let centroid: Vec<f64> = (0..n).map(|d| simplex[..n].iter().map(|p| p[d]).sum::<f64>() / n as f64).collect();
        let along = |t: f64| -> Vec<f64> { (0..n).map(|d| centroid[d] + t * (simplex[n][d] - centroid[d])).collect() };
        let reflected = along(-1.0);
        let fr = eval(&reflected);
        if fr < values[0] {
            let expanded = along(-2.0);
            let fe = eval(&expanded);
            if fe < fr {
                (simplex[n], values[n]) = (expanded, fe);
            } else {
                (simplex[n], values[n]) = (reflected, fr);
            }
        } else if fr < values[n - 1] {
            (simplex[n], values[n]) = (reflected, fr);
        } else {
            let contracted = if fr < values[n] { along(-0.5) } else { along(0.5) };
            let fc = eval(&contracted);
            if fc < values[n].min(fr) {
                (simplex[n], values[n]) = (contracted, fc);
            } else {
                for i in 1..=n {
                    simplex[i] = (0..n).map(|d| simplex[0][d] + 0.5 * (simplex[i][d] - simplex[0][d])).collect();
                    values[i] = eval(&simplex[i]);
                }
            }
        }
    }
    let best = (0..=n).min_by(|&i, &j| values[i].total_cmp(&values[j])).unwrap_or(0);
    Minimum { x: simplex[best].clone(), value: values[best], iterations, converged }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_rosenbrock() {
        let rosen = |x: &[f64]| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2);
        let m = nelder_mead(rosen, &[-1.2, 1.0], 0.5, 1e-14, 5000);
        assert!(m.converged);
        assert!((m.x[0] - 1.0).abs() < 1e-4 && (m.x[1] - 1.0).abs() < 1e-4, "{:?}", m.x);
    }

    #[test]
    fn non_finite_values_are_avoided() {
        // The function is undefined for x < 0; the minimiser must stay in the domain.
        let f = |x: &[f64]| if x[0] < 0.0 { f64::NAN } else { (x[0] - 2.0).powi(2) };
        let m = nelder_mead(f, &[0.5], 1.0, 1e-14, 1000);
        assert!((m.x[0] - 2.0).abs() < 1e-5);
    }
}
