//! The browser bundle: hydrates the dashboard the server rendered.

// Leptos view types nest deeply; the release build needs more room to lay them out.
#![recursion_limit = "256"]

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
