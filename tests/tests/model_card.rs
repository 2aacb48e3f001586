//! The shipped model's human-readable card is the one its `model.json` produces.

use funnel_artifacts::ModelDir;
use funnel_e2e::ecg_model;

#[test]
fn the_shipped_card_markdown_matches_model_json() {
    let dir = ModelDir::new(ecg_model());
    let card = dir.load_card().unwrap();
    let path = dir.card_markdown_path();
    if std::env::var_os("FUNNEL_BLESS").is_some() {
        std::fs::write(&path, card.to_markdown()).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert_eq!(committed, card.to_markdown(), "{} is stale: `funnel` rewrites it with every card save", path.display());
}
