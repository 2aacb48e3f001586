//! The shipped model's human-readable card is the one its `model.json` produces.

use funnel::card::{ModelCard, CARD_MARKDOWN_FILE};
use funnel_e2e::ecg_model;

#[test]
fn the_shipped_card_markdown_matches_model_json() {
    let card = ModelCard::load(&ecg_model()).unwrap();
    let path = ecg_model().join(CARD_MARKDOWN_FILE);
    if std::env::var_os("FUNNEL_BLESS").is_some() {
        std::fs::write(&path, card.to_markdown()).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert_eq!(committed, card.to_markdown(), "{} is stale: `funnel` rewrites it with every card save", path.display());
}
