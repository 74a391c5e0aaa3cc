fn main() {
    println!("tollgate-cp {}", tollgate_shared::VERSION);
}
