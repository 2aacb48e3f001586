//! The shipped models' human-readable cards are the ones their `model.json` produce.

use funnel_artifacts::ModelDir;
use funnel_e2e::{ecg_bounded_model, ecg_lossless_model, ecg_model};

#[test]
fn the_shipped_cards_markdown_matches_model_json() {
    for model in [ecg_model(), ecg_lossless_model(), ecg_bounded_model()] {
        let dir = ModelDir::new(model);
        let card = dir.load_card().unwrap();
        let path = dir.card_markdown_path();
        if std::env::var_os("FUNNEL_BLESS").is_some() {
            std::fs::write(&path, card.to_markdown()).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            committed,
            card.to_markdown(),
            "{} is stale: `funnel` rewrites it with every card save",
            path.display()
        );
    }
}
