fn main() {
    println!("tollgate-dp {}", tollgate_shared::VERSION);
}
