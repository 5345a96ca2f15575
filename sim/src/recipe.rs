//! placeholder
/// The state a recipe keeps between steps.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecipeState {}
