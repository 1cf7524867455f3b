// `embed_migrations!` reads migrations/ at compile time but cargo does not know that: without this line a
// new or edited migration would silently ship without being embedded.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
